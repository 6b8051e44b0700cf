#!/usr/bin/env bash
# Renders sample files with the first-party plugins (through the CLI, no
# database needed) and screenshots each preview with headless Chromium, to
# look at what a TA sees.
#   scripts/screenshots.sh [OUT]      (default: target/screenshots)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/screenshots}"
mkdir -p "$out/input"
bin="${PD2_TICKET_BIN:-target/debug/pd2-ticket}"
[ -x "$bin" ] || cargo build -q -p pd2-ticket
plugins/build.sh >/dev/null 2>&1

# A Java file with a tab, a long line, an annotation and Windows line ends.
printf 'package demo;\r\n\r\n/** A demo. */\r\npublic class Main {\r\n\t@Override\r\n\tpublic String toString() { return "a very long line that keeps going and going to show how long lines wrap inside the code column while the line numbers stay where they are"; }\r\n\r\n\tpublic static void main(String[] args) {\r\n\t\tSystem.out.println(new Main());\r\n\t}\r\n}\r\n' > "$out/input/Main.java"
printf '# Notes\n\nSome *text*[^1] and a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- [ ] to do\n\n```java\nclass A {\n    void f() { return; }\n}\n```\n\n[^1]: A footnote.\n' > "$out/input/README.md"
printf '#!/usr/bin/env python3\nimport sys\n\nprint("hello", sys.argv)\n' > "$out/input/run"

shoot() { # plugin input name
  "$bin" plugin render "plugins/dist/$1.wasm" "$2" > "$out/$3.html" 2>/dev/null
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=900,500 --screenshot="$out/$3.png" "file://$PWD/$out/$3.html" >/dev/null 2>&1
  echo "$out/$3.png"
}
shoot code-preview "$out/input/Main.java" java
shoot markdown-preview "$out/input/README.md" markdown
shoot code-preview "$out/input/run" shebang

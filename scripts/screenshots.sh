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
printf '#!/usr/bin/env python3\nimport sys\n\nprint("hello", sys.argv)\n' > "$out/input/run"
printf 'student,group,score,late,comment\nAnn,G1,9.5,false,"on time, tidy"\nBob,G2,7,true,"missed ""tests"""\nCleo,G1,8.25,false,\n<b>Dan</b>,G3,10,false,"two\nlines"\n' > "$out/input/grades.csv"

shoot() { # plugin input name [dark]
  "$bin" plugin render "plugins/dist/$1.wasm" "$2" > "$out/$3.html" 2>/dev/null
  local scheme=()
  [ "${4:-}" = dark ] && scheme=(--force-dark-mode --blink-settings=preferredColorScheme=0)
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --disable-background-networking --disable-component-update --no-first-run \
    "${scheme[@]}" --window-size=900,"${5:-500}" --screenshot="$out/$3.png" \
    "file://$PWD/$out/$3.html" >/dev/null 2>&1
  echo "$out/$3.png"
}
shoot code-preview "$out/input/Main.java" java
shoot code-preview "$out/input/Main.java" java-dark dark
shoot code-preview "$out/input/run" shebang

# A README beside a screenshot (the Java one): the image is inlined from
# the "ticket" (the folder), the link to Main.java carries its path.
cp "$out/java.png" "$out/input/shot.png"
printf '# Lab 3\n\nThe program and its output:\n\n![output](shot.png)\n\nSee [Main.java](Main.java#L5), *text*[^1] and a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- [ ] to do\n\n![missing](nothere.png)\n\n```java\nclass A {\n    @Override\n    public String toString() { return "A"; }\n}\n```\n\n[^1]: A footnote.\n' > "$out/input/README.md"
shoot markdown-preview "$out/input/README.md" markdown light 900
shoot markdown-preview "$out/input/README.md" markdown-dark dark 900

# A notebook: Markdown, code with outputs, an error, an image.
python3 - "$out/input" <<'PY'
import base64, json, sys
d = sys.argv[1]
img = base64.b64encode(open(f"{d}/shot.png", "rb").read()).decode()
cells = [
    {"cell_type": "markdown", "source": "# Analysis\n\nLoad the *grades* and look at them."},
    {"cell_type": "code", "execution_count": 1, "source": "import statistics\nscores = [9.5, 7, 8.25, 10]\nprint(statistics.mean(scores))",
     "outputs": [{"output_type": "stream", "name": "stdout", "text": "8.6875\n"}]},
    {"cell_type": "code", "execution_count": 2, "source": "max(scores) / 0",
     "outputs": [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                  "traceback": ["\u001b[0;31m---------------------------------------------------------------------------\u001b[0m",
                                "\u001b[0;31mZeroDivisionError\u001b[0m                         Traceback (most recent call last)",
                                "Cell \u001b[0;32mIn[2], line 1\u001b[0m\n\u001b[0;32m----> 1\u001b[0m \u001b[38;5;28mmax\u001b[39m(scores) \u001b[38;5;241m/\u001b[39m \u001b[38;5;241m0\u001b[39m",
                                "\u001b[0;31mZeroDivisionError\u001b[0m: division by zero"]}]},
    {"cell_type": "code", "execution_count": 3, "source": "len(scores)",
     "outputs": [{"output_type": "execute_result", "execution_count": 3, "data": {"text/plain": "4"}}]},
    {"cell_type": "code", "execution_count": 4, "source": "show(plot(scores))",
     "outputs": [{"output_type": "display_data", "data": {"image/png": img, "text/plain": "<Figure>"}}]},
]
nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "language": "python"}}, "cells": cells}
json.dump(nb, open(f"{d}/analysis.ipynb", "w"))
PY
shoot notebook-preview "$out/input/analysis.ipynb" notebook light 1100
shoot notebook-preview "$out/input/analysis.ipynb" notebook-dark dark 1100
shoot table-preview "$out/input/grades.csv" csv light 300
shoot table-preview "$out/input/grades.csv" csv-dark dark 300

// The ticket's files as a tree, the way GitHub shows a repository: folders
// first, names in natural order (file2 before file10), and a chain of
// folders that hold only one folder shown as one row (`src/main/java/edu`).
// Pure functions: the browser suite checks them on their own too.

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/** `{ name, dirs: [...], files: [path…] }`, sorted, chains collapsed. */
export function buildTree(paths) {
  const root = { name: "", dirs: new Map(), files: [] };
  for (const path of paths) {
    const parts = path.split("/");
    let node = root;
    for (const dir of parts.slice(0, -1)) {
      if (!node.dirs.has(dir)) node.dirs.set(dir, { name: dir, dirs: new Map(), files: [] });
      node = node.dirs.get(dir);
    }
    node.files.push(path);
  }
  return finish(root);
}

function finish(node) {
  let dirs = [...node.dirs.values()].map(finish);
  // A folder holding exactly one folder and no files is one row with it.
  dirs = dirs.map((dir) => {
    while (dir.files.length === 0 && dir.dirs.length === 1) {
      const only = dir.dirs[0];
      dir = { ...only, name: `${dir.name}/${only.name}` };
    }
    return dir;
  });
  dirs.sort((a, b) => collator.compare(a.name, b.name));
  const files = [...node.files].sort((a, b) => collator.compare(a.split("/").pop(), b.split("/").pop()));
  return { name: node.name, dirs, files };
}

/** The files in the order the tree shows them (for j/k and the finder). */
export function treeOrder(tree) {
  return [...tree.dirs.flatMap(treeOrder), ...tree.files];
}

/**
 * A fuzzy match of `query` in `path` (its characters in order, as GitHub's
 * "Go to file"): a score (higher is better) and the matched positions, or
 * null. Matches in the file name, at word starts and in runs score more.
 */
export function fuzzyMatch(query, path) {
  const q = query.toLowerCase().replace(/\s+/g, "");
  if (!q) return { score: 0, positions: [] };
  const text = path.toLowerCase();
  const nameStart = path.lastIndexOf("/") + 1;
  const positions = [];
  let score = 0;
  let from = 0;
  for (const c of q) {
    // Prefer the last occurrence in the file name for the first letter.
    let at = text.indexOf(c, from);
    if (at < 0) return null;
    if (positions.length === 0) {
      const inName = text.indexOf(c, Math.max(from, nameStart));
      if (inName >= 0) at = inName;
    }
    const previous = positions[positions.length - 1];
    score += 1;
    if (previous !== undefined && at === previous + 1) score += 5;
    if (at === 0 || "/_-. ".includes(path[at - 1])) score += 3;
    if (at >= nameStart) score += 2;
    positions.push(at);
    from = at + 1;
  }
  // Shorter paths first among equals.
  return { score: score * 1000 - path.length, positions };
}

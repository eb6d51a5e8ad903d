//! Import circles between the top-level modules of one library crate.
//!
//! The module graph has an edge `a -> b` when a file of top-level module `a`
//! (its `src/a.rs` and the files of its submodules) names `crate::b` (in a
//! `use` or a path, grouped imports such as `use crate::{b::X, c}` included),
//! or, in `src/a.rs` itself, `super::b`. A strongly connected set of two or
//! more modules is a circle: none of them can be understood, tested or moved
//! without the others.
//!
//! The scan is deliberately approximate: a text scan, no parser. Comments,
//! string and char literals are blanked first, and items under `#[cfg(test)]`
//! are skipped (test code may reach anywhere). Not seen: names reached only
//! through the crate root's re-exports (`crate::Store`), `#[path]` attributes,
//! file modules declared inside inline modules, and macros that build paths.
//! Good enough to keep circles from growing back; not a proof of absence.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    fmt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// Crates whose circles are reported but do not fail the guard: a new
/// circle anywhere else fails at once. Shrink it; an entry with nothing left
/// to allow is reported so it can be removed.
pub(crate) const ALLOWED: &[(&str, &str)] = &[
    // Empty: issue 10 dismantled the last one (`strait-upstream`, whose
    // cluster reached up into the detectors and tasks acting on it). A
    // circle found later goes here only with its reason and an issue.
];

/// One circle: its modules and the edges between them, each with where it
/// was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Circle {
    pub(crate) modules: Vec<String>,
    /// A shortest cycle through the first module, to start untangling.
    pub(crate) example: Vec<String>,
    pub(crate) edges: Vec<(String, String, String)>,
}

impl fmt::Display for Circle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "modules {} import each other in a circle, e.g. {}",
            self.modules.join(", "),
            self.example.join(" -> ")
        )?;
        for (from, to, at) in &self.edges {
            write!(f, "\n      {from} -> {to} ({at})")?;
        }
        Ok(())
    }
}

/// The circles of the library whose root file is `lib_rs`; paths in the
/// report are relative to `root`.
pub(crate) fn crate_circles(lib_rs: &Path, root: &Path) -> Result<Vec<Circle>> {
    let edges = module_edges(lib_rs, root)?;
    Ok(circles(&edges))
}

/// Edges between top-level modules, each with its first location.
type Edges = BTreeMap<(String, String), String>;

fn module_edges(lib_rs: &Path, root: &Path) -> Result<Edges> {
    let src = lib_rs
        .parent()
        .context("a crate root file has a directory")?;
    let lib_text = read(lib_rs)?;
    let top: Vec<String> = mod_declarations(&lib_text);
    let top_set: BTreeSet<&str> = top.iter().map(String::as_str).collect();
    let mut edges = Edges::new();
    for module in &top {
        let Some(file) = module_file(src, module) else {
            continue;
        };
        // The top-level file, then its submodules' files, following `mod`.
        let mut queue = VecDeque::from([(file, true)]);
        while let Some((file, top_level)) = queue.pop_front() {
            let text = read(&file)?;
            let shown = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            for (target, line) in references(&text, top_level) {
                if target != *module && top_set.contains(target.as_str()) {
                    edges
                        .entry((module.clone(), target))
                        .or_insert_with(|| format!("{shown}:{line}"));
                }
            }
            let dir = submodule_dir(&file);
            for sub in mod_declarations(&text) {
                if let Some(f) = module_file(&dir, &sub) {
                    queue.push_back((f, false));
                }
            }
        }
    }
    Ok(edges)
}

fn read(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(without_test_items(&blank_literals(&text)))
}

/// `dir/name.rs`, else `dir/name/mod.rs`.
fn module_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Where the files of `file`'s submodules live: `a/` beside `a.rs`, or the
/// directory of a `mod.rs`.
fn submodule_dir(file: &Path) -> PathBuf {
    let parent = file.parent().unwrap_or(Path::new("."));
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod") | None => parent.to_path_buf(),
        Some(stem) => parent.join(stem),
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier starting at byte `at`, if any.
fn ident_at(text: &str, at: usize) -> Option<&str> {
    let rest = text.get(at..)?;
    let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
    (end > 0 && !rest.starts_with(|c: char| c.is_ascii_digit())).then(|| &rest[..end])
}

fn skip_space(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|r| r.find(|c: char| !c.is_whitespace()))
        .map_or(text.len(), |n| at + n)
}

/// Names of file modules declared in `text` (`mod x;`, any visibility).
fn mod_declarations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("mod") {
        if text[..at].ends_with(is_ident) || !text[at + 3..].starts_with(char::is_whitespace) {
            continue;
        }
        let start = skip_space(text, at + 3);
        if let Some(name) = ident_at(text, start)
            && text[skip_space(text, start + name.len())..].starts_with(';')
        {
            out.push(name.to_owned());
        }
    }
    out
}

/// The first path segments after `crate::` (and, in a top-level module's
/// own file, `super::`), with their line numbers.
fn references(text: &str, top_level: bool) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let prefixes: &[&str] = if top_level {
        &["crate::", "super::"]
    } else {
        &["crate::"]
    };
    for prefix in prefixes {
        for (at, _) in text.match_indices(prefix) {
            // `$crate::` is this crate too; `my_crate::` and `a::crate::` are not.
            if text[..at].ends_with(|c: char| is_ident(c) || c == ':') {
                continue;
            }
            let line = text[..at].matches('\n').count() + 1;
            let after = skip_space(text, at + prefix.len());
            if let Some(name) = ident_at(text, after) {
                out.push((name.to_owned(), line));
            } else if text[after..].starts_with('{') {
                out.extend(
                    group_heads(&text[after + 1..])
                        .into_iter()
                        .map(|n| (n, line)),
                );
            }
        }
    }
    out
}

/// The first segment of each item of a `{a::X, b, c::{d, e}}` group, given
/// the text after its opening brace.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut expect_head) = (1usize, true);
    let mut at = 0;
    while at < text.len() {
        let Some(c) = text[at..].chars().next() else {
            break;
        };
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_head = true,
            c if is_ident(c) && depth == 1 && expect_head => {
                if let Some(name) = ident_at(text, at) {
                    heads.push(name.to_owned());
                    at += name.len();
                    expect_head = false;
                    continue;
                }
            }
            _ => {}
        }
        at += c.len_utf8();
    }
    heads
}

/// `text` with comments and string and char literals replaced by spaces,
/// newlines kept (so line numbers hold).
fn blank_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let end = if c == '/' && next == Some('/') {
            chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |n| i + n)
        } else if c == '/' && next == Some('*') {
            block_comment_end(&chars, i)
        } else if c == '"' {
            string_end(&chars, i + 1)
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !prev_is_ident(&chars, i) {
            raw_string_end(&chars, i + 1).unwrap_or(i + 1)
        } else if c == '\'' {
            char_end(&chars, i).unwrap_or(i + 1)
        } else {
            i + 1
        };
        if end == i + 1 {
            out.push(c);
        } else {
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
        }
        i = end;
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && is_ident(chars[i - 1])
}

/// Past the end of a (nested) block comment starting at `i`.
fn block_comment_end(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    chars.len()
}

/// Past the closing quote of a string whose body starts at `i`.
fn string_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// Past the end of `r#"..."#`, given the index after the `r`.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
    if chars.get(i + hashes) != Some(&'"') {
        return None;
    }
    let mut j = i + hashes + 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// Past the end of a char literal at `i`; `None` for a lifetime.
fn char_end(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        // Skip the escaped character itself: `'\''` ends at its third quote.
        '\\' => chars
            .get(i + 3..)?
            .iter()
            .position(|&c| c == '\'')
            .map(|n| i + 4 + n),
        _ if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

/// `text` without the items marked `#[cfg(test)]`: from the attribute to the
/// end of the item (its first `;` or its braced body, whichever comes first).
fn without_test_items(text: &str) -> String {
    let mut out = text.to_owned();
    let mut from = 0;
    while let Some(found) = out[from..].find("#[cfg(test)]") {
        let start = from + found;
        let mut end = out.len();
        let mut depth = 0usize;
        for (n, c) in out[start..].char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = start + n + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = start + n + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blanked: String = out[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(start..end, &blanked);
        from = start + blanked.len();
    }
    out
}

/// The strongly connected sets of two or more modules (Tarjan), each with a
/// shortest example cycle.
fn circles(edges: &Edges) -> Vec<Circle> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
        graph.entry(to).or_default();
    }
    let mut tarjan = Tarjan::default();
    for &node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node, &graph);
        }
    }
    let mut out: Vec<Circle> = tarjan
        .components
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|mut members| {
            members.sort_unstable();
            let set: BTreeSet<&str> = members.iter().copied().collect();
            let circle_edges = edges
                .iter()
                .filter(|((f, t), _)| set.contains(f.as_str()) && set.contains(t.as_str()))
                .map(|((f, t), at)| (f.clone(), t.clone(), at.clone()))
                .collect();
            Circle {
                example: shortest_cycle(members[0], &graph, &set),
                modules: members.iter().map(|m| (*m).to_owned()).collect(),
                edges: circle_edges,
            }
        })
        .collect();
    out.sort_by(|a, b| a.modules.cmp(&b.modules));
    out
}

#[derive(Default)]
struct Tarjan<'a> {
    next: usize,
    index: HashMap<&'a str, usize>,
    low: HashMap<&'a str, usize>,
    stack: Vec<&'a str>,
    on_stack: BTreeSet<&'a str>,
    components: Vec<Vec<&'a str>>,
}

impl<'a> Tarjan<'a> {
    // Recursive: module graphs are a few dozen nodes deep at most.
    fn visit(&mut self, v: &'a str, graph: &BTreeMap<&'a str, Vec<&'a str>>) {
        self.index.insert(v, self.next);
        self.low.insert(v, self.next);
        self.next += 1;
        self.stack.push(v);
        self.on_stack.insert(v);
        for &w in graph.get(v).map_or(&[][..], Vec::as_slice) {
            if !self.index.contains_key(w) {
                self.visit(w, graph);
                let low = self.low[v].min(self.low[w]);
                self.low.insert(v, low);
            } else if self.on_stack.contains(w) {
                let low = self.low[v].min(self.index[w]);
                self.low.insert(v, low);
            }
        }
        if self.low[v] == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// A shortest path from `start` back to itself within `set` (breadth first).
fn shortest_cycle(
    start: &str,
    graph: &BTreeMap<&str, Vec<&str>>,
    set: &BTreeSet<&str>,
) -> Vec<String> {
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in graph.get(v).map_or(&[][..], Vec::as_slice) {
            if !set.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![start.to_owned(), v.to_owned()];
                let mut at = v;
                while let Some(&p) = parent.get(at) {
                    path.push(p.to_owned());
                    at = p;
                }
                path.reverse();
                return path;
            }
            if !parent.contains_key(w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start.to_owned()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_see_paths_groups_and_super_but_not_comments_or_strings() {
        let text = blank_literals(
            "use crate::{a::X, b, c::{d, e}};\n\
             // crate::commented\n\
             let s = \"crate::quoted\"; let c = '\"'; let q = '\\''; let r = r#\"crate::raw\"#;\n\
             fn f<'a>(x: &'a crate::f::T) { super::g::h(); my_crate::no(); }\n",
        );
        let found: Vec<(String, usize)> = references(&text, true);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "f", "g"]);
        assert_eq!(found[3].1, 4);
        let nested: Vec<String> = references(&text, false)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(nested, ["a", "b", "c", "f"]);
    }

    #[test]
    fn test_items_are_skipped() {
        let text = without_test_items(&blank_literals(
            "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n    fn x() { {} }\n}\n\
             #[cfg(test)]\nuse crate::c;\nuse crate::d;\n",
        ));
        let names: Vec<String> = references(&text, false)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a", "d"]);
    }

    #[test]
    fn mod_declarations_are_file_modules_only() {
        let text = "pub mod a;\nmod b ;\npub(crate) mod c;\nmod inline { }\nfn model() {}\n";
        assert_eq!(mod_declarations(text), ["a", "b", "c"]);
    }

    fn edges(list: &[(&str, &str)]) -> Edges {
        list.iter()
            .map(|(f, t)| (((*f).to_owned(), (*t).to_owned()), format!("src/{f}.rs:1")))
            .collect()
    }

    #[test]
    fn a_circle_is_found_with_an_example() {
        let found = circles(&edges(&[
            ("http", "router"),
            ("router", "filters"),
            ("filters", "http"),
            ("router", "stats"),
            ("tcp", "stats"),
        ]));
        let [circle] = found.as_slice() else {
            panic!("{found:?}")
        };
        assert_eq!(circle.modules, ["filters", "http", "router"]);
        assert_eq!(circle.example, ["filters", "http", "router", "filters"]);
        assert_eq!(circle.edges.len(), 3);
    }

    #[test]
    fn a_tree_has_no_circle() {
        let found = circles(&edges(&[("a", "b"), ("a", "c"), ("b", "c")]));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_crate_on_disk_is_scanned() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-circles-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src/a"))?;
        std::fs::write(dir.join("src/lib.rs"), "mod a;\nmod b;\nmod c;\n")?;
        std::fs::write(dir.join("src/a.rs"), "mod inner;\n")?;
        std::fs::write(dir.join("src/a/inner.rs"), "use crate::b::B;\n")?;
        std::fs::write(dir.join("src/b.rs"), "pub struct B(super::a::A);\n")?;
        std::fs::write(dir.join("src/c.rs"), "use crate::a;\n")?;
        let found = crate_circles(&dir.join("src/lib.rs"), &dir);
        std::fs::remove_dir_all(&dir)?;
        let found = found?;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].modules, ["a", "b"]);
        assert!(
            found[0]
                .edges
                .contains(&("a".into(), "b".into(), "src/a/inner.rs:1".into()))
        );
        Ok(())
    }
}

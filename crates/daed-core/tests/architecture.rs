//! The shape of the code (docs/architecture.md): no import cycle between daed-core's top-level
//! modules, and no function in daed-cli longer than 60 lines (the CLI parses, calls, prints).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The top-level modules each module names through `crate::` (outside its tests).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .iter()
            .next()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut names = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                names.extend(top_level_modules(group));
            } else if let Some((m, _)) = rest.split_once("::") {
                names.insert(m.to_string());
            }
        }
        names.retain(|m| m != &top && m.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        graph.entry(top).or_default().extend(names);
    }
    graph
}

/// The first path segment of each top-level item of a `use crate::{...}` group (`group` starts
/// after the opening brace; nested braces are skipped by depth).
fn top_level_modules(group: &str) -> Vec<String> {
    let (mut depth, mut item, mut out) = (0usize, String::new(), Vec::new());
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        if depth == 0 || c == '{' {
            item.push(c);
        }
    }
    out.push(item);
    out.iter()
        .filter_map(|i| i.trim().split_once("::").map(|(m, _)| m.trim().to_string()))
        .collect()
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let (mut seen, mut todo) = (BTreeSet::new(), vec![from.to_string()]);
    while let Some(m) = todo.pop() {
        for n in graph.get(&m).into_iter().flatten() {
            if n == to {
                return true;
            }
            if seen.insert(n.clone()) {
                todo.push(n.clone());
            }
        }
    }
    false
}

#[test]
fn daed_core_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    assert!(graph.len() > 10, "modules found: {:?}", graph.keys());
    let cycles: Vec<(String, String)> = graph
        .iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| (a.clone(), b.clone())))
        .filter(|(a, b)| reaches(&graph, b, a))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles (a uses b, b reaches a): {cycles:?}"
    );
}

/// Lengths of the functions in `text` (from the `fn` line to its closing brace at the same indent).
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        if let Some(rest) = t.strip_prefix("fn ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let close = format!("{}}}", " ".repeat(indent));
            let end = (i + 1..lines.len())
                .find(|&j| lines[j] == close)
                .unwrap_or(i);
            out.push((name, end - i + 1));
            i = end;
        }
        i += 1;
    }
    out
}

#[test]
fn daed_cli_functions_stay_short() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../daed-cli/src");
    let long: Vec<String> = rust_files(&src)
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            function_lengths(&text)
                .into_iter()
                .filter(|(_, n)| *n > 60)
                .map(move |(func, n)| format!("{name}: {func} ({n} lines)"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "daed-cli functions over 60 lines: {long:?}"
    );
    assert_eq!(
        top_level_modules("a::{X, y::{Z}}, b::W, c::{self}} rest"),
        vec!["a", "b", "c"]
    );
    let sample = "fn a() {\n    x();\n}\n";
    assert_eq!(function_lengths(sample), vec![("a".to_string(), 3)]);
}

//! The README's layer map is the code's: every `crate::` and `super::` path in `src/` points
//! at a lower layer or at the importing file's own folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One row of the map: a file (`src/x.rs`) or a folder (`src/x/`) and its layer.
struct Row {
    path: String,
    layer: u32,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn layer_map() -> Vec<Row> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("<!-- layers:begin -->")
        .expect("README has the layer map");
    let end = readme.find("<!-- layers:end -->").unwrap();
    let rows: Vec<Row> = readme[start..end]
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let layer = cells.get(1)?.parse().ok()?;
            let path = cells.get(2)?.trim_matches('`').to_string();
            Some(Row { path, layer })
        })
        .collect();
    assert!(rows.len() > 10, "the layer map has too few rows");
    rows
}

/// The row of a source file or module path (`src/pipeline/plan.rs`): the longest matching
/// path.
fn row_of<'a>(rows: &'a [Row], file: &str) -> Option<&'a Row> {
    rows.iter()
        .filter(|r| {
            if r.path.ends_with('/') {
                file.starts_with(&r.path)
            } else {
                file == r.path
            }
        })
        .max_by_key(|r| r.path.len())
}

/// The file a module path names, as far as the map needs it: `pipeline::plan` is
/// `src/pipeline/plan.rs` when that file exists, else the folder `src/pipeline/`.
fn file_of(module: &[String]) -> String {
    let mut best = String::from("src/lib.rs");
    for n in 1..=module.len() {
        let stem = format!("src/{}", module[..n].join("/"));
        if Path::new(&repo()).join(format!("{stem}.rs")).exists() {
            best = format!("{stem}.rs");
        } else if Path::new(&repo()).join(&stem).is_dir() {
            best = format!("{stem}/");
        } else {
            break;
        }
    }
    best
}

/// The module path of a source file: `src/pipeline/plan.rs` -> `[pipeline, plan]`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(String::from).collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every module path a file names through `crate::` or `super::`, `{a, b}` groups expanded
/// one level; comments are skipped.
fn imports(file: &str, text: &str) -> BTreeSet<Vec<String>> {
    let own = module_of(file);
    // The module `super` refers to: for `mod.rs` files the folder's parent.
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (prefix, base) in [
            ("crate::", Vec::new()),
            ("super::", {
                let mut m = own.clone();
                m.pop();
                m
            }),
        ] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(is_ident) || before == Some(':') {
                    continue;
                }
                let mut base = base.clone();
                let mut tail = rest;
                // `super::super::x`
                while let Some(t) = tail.strip_prefix("super::") {
                    base.pop();
                    tail = t;
                }
                if let Some(group) = tail.strip_prefix('{') {
                    let inner = group.split('}').next().unwrap_or("");
                    for item in inner.split(',') {
                        let name: String =
                            item.trim().chars().take_while(|&c| is_ident(c)).collect();
                        if !name.is_empty() && name != "self" {
                            let mut path = base.clone();
                            path.push(name);
                            found.insert(path);
                        }
                    }
                } else {
                    let mut path = base.clone();
                    for segment in tail.split("::") {
                        let name: String = segment.chars().take_while(|&c| is_ident(c)).collect();
                        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_uppercase()) {
                            break;
                        }
                        path.push(name.clone());
                        if name.len() != segment.len() {
                            break;
                        }
                    }
                    found.insert(path);
                }
            }
        }
    }
    found
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_is_on_the_map_and_imports_only_lower_layers() {
    let rows = layer_map();
    let mut files = Vec::new();
    source_files(&repo().join("src"), &mut files);
    let mut unmapped = Vec::new();
    let mut violations = Vec::new();
    for path in &files {
        let file = path
            .strip_prefix(repo())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if file == "src/lib.rs" {
            continue;
        }
        let Some(row) = row_of(&rows, &file) else {
            unmapped.push(file);
            continue;
        };
        let text = std::fs::read_to_string(path).unwrap();
        for module in imports(&file, &text) {
            let target = file_of(&module);
            if target == "src/lib.rs" {
                continue; // the crate root itself (`crate::{...}` of modules is expanded)
            }
            let Some(to) = row_of(&rows, &target) else {
                unmapped.push(format!("{target} (imported by {file})"));
                continue;
            };
            let same_row = std::ptr::eq(to, row);
            let folder = |p: &str| p.rsplit_once('/').map(|(f, _)| f.to_string());
            let same_layer_and_folder = to.layer == row.layer && folder(&to.path) == folder(&file);
            if !(to.layer < row.layer || same_row || same_layer_and_folder) {
                violations.push(format!(
                    "{file} (layer {}) imports {} ({}, layer {})",
                    row.layer,
                    module.join("::"),
                    to.path,
                    to.layer
                ));
            }
        }
    }
    assert!(
        unmapped.is_empty(),
        "not on the README's layer map: {unmapped:?}"
    );
    assert!(
        violations.is_empty(),
        "imports of a higher or equal layer:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_each_kind_of_import() {
    let text = "use crate::pipeline::messages::Msg;\nuse super::plan::{plan, goes};\nuse crate::{config, video::VideoJob};\nlet x = crate::track::nms::oks_nms(p); // crate::render\n";
    let found = imports("src/pipeline/build.rs", text);
    let names: BTreeSet<String> = found.iter().map(|m| m.join("::")).collect();
    for expected in [
        "pipeline::messages",
        "pipeline::plan",
        "config",
        "video",
        "track::nms::oks_nms",
    ] {
        assert!(names.contains(expected), "{expected} not in {names:?}");
    }
    assert!(!names.contains("render"), "a comment counted: {names:?}");
    let rows = layer_map();
    assert_eq!(
        file_of(&["pipeline".into(), "plan".into()]),
        "src/pipeline/plan.rs"
    );
    assert_eq!(
        row_of(&rows, "src/pipeline/plan.rs").unwrap().layer,
        row_of(&rows, "src/pipeline/build.rs").unwrap().layer
    );
    assert!(
        row_of(&rows, "src/pipeline/messages.rs").unwrap().layer
            < row_of(&rows, "src/stages/pose.rs").unwrap().layer
    );
}

/// The error half of each `Result<T, E>` written in `text`.
fn result_error_types(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("Result<") {
        rest = &rest[at + "Result<".len()..];
        let (mut depth, mut last_comma) = (1, None);
        for (i, c) in rest.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => {
                    depth -= 1;
                    if depth == 0 {
                        if let Some(comma) = last_comma {
                            errors.push(rest[comma + 1..i].trim().to_string());
                        }
                        break;
                    }
                }
                ',' if depth == 1 => last_comma = Some(i),
                _ => {}
            }
        }
    }
    errors
}

#[test]
fn failures_are_typed_not_strings() {
    assert_eq!(
        result_error_types("fn f() -> Result<Vec<(u8, u8)>, String> {} Result<(), E>"),
        ["String", "E"]
    );
    let mut files = Vec::new();
    source_files(&repo().join("src"), &mut files);
    let stringly: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            result_error_types(&text).iter().any(|e| e == "String")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(stringly.is_empty(), "Result<_, String> in {stringly:?}");
}

/// `config` flows one way: only the files that turn it into a run read it; the stages, sinks
/// and models get plain settings.
#[test]
fn the_configuration_is_read_only_where_the_run_is_built() {
    let allowed = [
        "src/config.rs",
        "src/pipeline/build.rs",
        "src/pipeline/plan.rs",
        "src/main.rs",
    ];
    let mut files = Vec::new();
    source_files(&repo().join("src"), &mut files);
    let mut readers = Vec::new();
    for path in &files {
        let file = path
            .strip_prefix(repo())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let reads_config = imports(&file, &text)
            .iter()
            .any(|m| m.first().is_some_and(|s| s == "config"))
            || text.contains("vidpose::config");
        if reads_config && !allowed.contains(&file.as_str()) {
            readers.push(file);
        }
    }
    assert!(
        readers.is_empty(),
        "the configuration is read by {readers:?}"
    );
}

//! Result tables as CSV and Markdown, JSON output, and number formatting.

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// A table of strings with a header row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    /// Column names.
    pub headers: Vec<String>,
    /// Rows of cells (rows may be shorter than the header; missing cells print empty).
    pub rows: Vec<Vec<String>>,
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Table {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    /// RFC 4180 CSV (cells with commas, quotes or newlines are quoted), one line per row.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            out.push_str(
                &row.iter()
                    .map(|c| csv_cell(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        out
    }

    /// A GitHub-flavoured Markdown table with padded columns (`|` in cells escaped).
    pub fn to_markdown(&self) -> String {
        let ncol = self
            .rows
            .iter()
            .map(|r| r.len())
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let cell = |r: &Vec<String>, i: usize| {
            r.get(i)
                .map(|s| s.replace('|', "\\|").replace('\n', " "))
                .unwrap_or_default()
        };
        let mut widths = vec![3; ncol];
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(r, i).chars().count());
            }
        }
        let line = |r: &Vec<String>| {
            let cells: Vec<String> = (0..ncol)
                .map(|i| format!("{:<w$}", cell(r, i), w = widths[i]))
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = line(&self.headers);
        out.push_str(&format!(
            "|{}|\n",
            widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("|")
        ));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }

    /// Writes the CSV to `path` atomically.
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path, self.to_csv().as_bytes())
    }

    /// Writes the Markdown table to `path` atomically.
    pub fn write_markdown(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path, self.to_markdown().as_bytes())
    }
}

/// Writes `value` as pretty-printed JSON (with a trailing newline) to `path` atomically.
pub fn write_json(path: impl AsRef<Path>, value: &impl Serialize) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(|e| {
        Error::Invalid(format!(
            "{}: cannot serialise JSON: {e}",
            path.as_ref().display()
        ))
    })?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Formats `x` with `digits` decimals; NaN and infinities print as `nan`, `inf`, `-inf`.
pub fn fmt_f(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{x:.digits$}")
    }
}

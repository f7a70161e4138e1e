//! A small document model rendered both as Markdown (images linked) and as one self-contained
//! HTML page (images embedded as base64, no network).
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One block of a document.
pub enum Block {
    /// A section heading.
    Heading(String),
    /// A paragraph (plain text).
    Para(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table: header and rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// A PNG (path relative to the document's folder) with a caption.
    Image(PathBuf, String),
}

/// A titled sequence of blocks.
pub struct Doc {
    /// The title.
    pub title: String,
    /// The blocks in order.
    pub blocks: Vec<Block>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Doc {
    /// The document as Markdown; images link to their files.
    pub fn to_markdown(&self) -> String {
        let mut md = format!("# {}\n\n", self.title);
        for b in &self.blocks {
            match b {
                Block::Heading(h) => md.push_str(&format!("## {h}\n\n")),
                Block::Para(p) => md.push_str(&format!("{p}\n\n")),
                Block::List(items) => {
                    for i in items {
                        md.push_str(&format!("- {i}\n"));
                    }
                    md.push('\n');
                }
                Block::Table(head, rows) => {
                    md.push_str(&format!("| {} |\n", head.join(" | ")));
                    md.push_str(&format!("|{}\n", "---|".repeat(head.len())));
                    for r in rows {
                        md.push_str(&format!("| {} |\n", r.join(" | ")));
                    }
                    md.push('\n');
                }
                Block::Image(p, cap) => {
                    md.push_str(&format!("![{cap}]({})\n\n*{cap}*\n\n", p.display()))
                }
            }
        }
        md
    }

    /// The document as one HTML page; images are read from `root` and embedded.
    pub fn to_html(&self, root: &Path) -> Result<String> {
        let mut h = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>\n<h1>{}</h1>\n",
            esc(&self.title),
            STYLE,
            esc(&self.title)
        );
        for b in &self.blocks {
            match b {
                Block::Heading(t) => h.push_str(&format!("<h2>{}</h2>\n", esc(t))),
                Block::Para(p) => h.push_str(&format!("<p>{}</p>\n", esc(p))),
                Block::List(items) => {
                    h.push_str("<ul>\n");
                    for i in items {
                        h.push_str(&format!("<li>{}</li>\n", esc(i)));
                    }
                    h.push_str("</ul>\n");
                }
                Block::Table(head, rows) => {
                    h.push_str("<table><thead><tr>");
                    for c in head {
                        h.push_str(&format!("<th>{}</th>", esc(c)));
                    }
                    h.push_str("</tr></thead><tbody>\n");
                    for r in rows {
                        h.push_str("<tr>");
                        for c in r {
                            h.push_str(&format!("<td>{}</td>", esc(c)));
                        }
                        h.push_str("</tr>\n");
                    }
                    h.push_str("</tbody></table>\n");
                }
                Block::Image(p, cap) => {
                    let path = root.join(p);
                    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                    h.push_str(&format!(
                        "<figure><img alt=\"{c}\" src=\"data:image/png;base64,{}\"><figcaption>{c}</figcaption></figure>\n",
                        base64(&bytes),
                        c = esc(cap)
                    ));
                }
            }
        }
        h.push_str("</body></html>\n");
        Ok(h)
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}\
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%}\
figure{margin:1em 0}figcaption{font-size:90%;color:#555}h2{border-bottom:1px solid #ddd;margin-top:2em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn html_escapes_text() {
        let d = Doc {
            title: "a<b".into(),
            blocks: vec![Block::Para("x & \"y\"".into())],
        };
        let h = d.to_html(Path::new(".")).unwrap();
        assert!(h.contains("a&lt;b") && h.contains("x &amp; &quot;y&quot;"));
    }
}

//! The one escaper of each markup the planner and the report write: HTML
//! and XML text (the SVG charts, the report's page) and Markdown table
//! cells. Runbook text reaches both (names, titles, instructions), so
//! every character with a meaning there is escaped.

/// Text for HTML or XML, in content or in a quoted attribute: `&`, `<`,
/// `>`, `"` and `'` escaped.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text for a Markdown table cell: backslashes and pipes escaped, line
/// breaks flattened to spaces.
pub fn markdown_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_markup_character_is_escaped() {
        assert_eq!(
            html(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
        assert_eq!(markdown_cell("a | b \\ c\nd\re"), "a \\| b \\\\ c d e");
    }
}

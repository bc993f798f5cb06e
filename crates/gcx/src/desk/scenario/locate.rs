//! Turns a byte offset in a scenario file into a line, a column and the dotted key that
//! holds it, for error messages (toml reports spans, not key paths).

/// 1-based line and column of `offset`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

/// The dotted key of the value at `offset`: the last `[table]` header above it plus the
/// key of the nearest `key =` line at or above it.
pub fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let mut key: Option<String> = None;
    let mut table: Option<String> = None;
    let upto = &text[..text[offset..].find('\n').map_or(text.len(), |p| offset + p)];
    for line in upto.lines().rev() {
        let t = line.trim();
        if t.starts_with('[') {
            table = Some(t.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
            break;
        }
        if key.is_none()
            && !t.starts_with('#')
            && let Some((k, _)) = t.split_once('=')
        {
            let k = k.trim().trim_matches('"');
            if !k.is_empty() && !k.contains(['{', '"', ',']) {
                key = Some(k.to_owned());
            }
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (Some(t), None) => t,
        (None, Some(k)) => k,
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_column_and_key() {
        let text = "name = \"x\"\n[load]\nmodel = \"open\"\nrate = -5\n";
        let off = text.find("-5").unwrap();
        assert_eq!(line_col(text, off), (4, 8));
        assert_eq!(key_at(text, off), "load.rate");
        assert_eq!(key_at(text, 2), "name");
    }

    #[test]
    fn multi_line_arrays_name_their_key() {
        let text = "thresholds = [\n  \"a < 1\",\n  \"b < 2\",\n]\n";
        let off = text.find("b <").unwrap();
        assert_eq!(key_at(text, off), "thresholds");
        assert_eq!(line_col(text, off).0, 3);
    }
}

//! "Did you mean": the closest known name to a misspelt one.

/// The candidate closest to `name` by edit distance, if it is close enough to
/// be a plausible typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = name.chars().count().div_ceil(3);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|&(distance, c)| distance <= limit.max(1) && c != name)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_only_near_names() {
        let names = ["wiki-new", "wiki", "garage"];
        assert_eq!(closest("wiki-nwe", names), Some("wiki-new"));
        assert_eq!(closest("garge", names), Some("garage"));
        assert_eq!(closest("database", names), None);
    }
}

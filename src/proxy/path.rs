//! Request paths as the router sees them: without dot-segments (RFC 3986 §5.2.4) and
//! repeated slashes, so that `/public/../admin` is routed — and forwarded — as
//! `/admin`, not by the `/public` rule. A percent-encoded dot (`%2e`) is a dot here:
//! upstreams decode it (RFC 3986 §6.2.2.2: unreserved characters are equivalent).

/// How many dots a segment stands for: 1 for `.`, 2 for `..`, 0 otherwise.
fn dots(segment: &str) -> u8 {
    if segment.len() > 6 || segment.is_empty() {
        return 0;
    }
    let mut n = 0;
    let mut rest = segment.as_bytes();
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return 0;
        }
        n += 1;
    }
    if n <= 2 { n } else { 0 }
}

/// Whether [`normalize`] would change `path`.
pub(crate) fn needs_normalizing(path: &str) -> bool {
    path.contains("//") || path.split('/').any(|s| dots(s) > 0)
}

/// `path` (starting with `/`, without its query) with dot-segments resolved and
/// repeated slashes merged; a trailing slash stays.
pub(crate) fn normalize(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match dots(segment) {
            2 => {
                kept.pop();
                trailing = last;
            }
            1 => trailing = last,
            _ if segment.is_empty() => trailing = last,
            _ => {
                kept.push(segment);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_repeated_slashes_go() {
        for (path, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/", "/a/"),
            ("/foo/../api", "/api"),
            ("/foo/%2E%2e/api", "/api"),
            ("/a//b///c", "/a/b/c"),
            ("//a", "/a"),
            ("/a/./b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/.../b", "/a/.../b"),
        ] {
            assert_eq!(normalize(path), want, "{path}");
            assert_eq!(needs_normalizing(path), path != want, "{path}");
        }
    }
}

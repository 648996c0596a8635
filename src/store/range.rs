//! Single byte ranges (RFC 9110 §14). Multiple ranges are not served: the
//! whole representation is, as the RFC allows.

/// A half-open byte range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn full(length: u64) -> ByteRange {
        ByteRange {
            start: 0,
            end: length,
        }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything with 200.
    Full,
    /// One satisfiable range: 206.
    Partial(ByteRange),
    /// Syntactically a range, but outside the representation: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header value against a representation of `length`.
pub fn parse_range(value: &str, length: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    // An empty last-byte-pos means "to the end"; a malformed one makes the
    // whole header invalid, never "to the end".
    let last = match last {
        "" => None,
        text => match parse_last(text) {
            Some(last) => Some(last),
            None => return RangeRequest::Full,
        },
    };
    match (parse_digits(first), last) {
        (Some(start), last) if first.len() == first.trim().len() => from_start(start, last, length),
        (None, Some(suffix)) if first.is_empty() => suffix_range(suffix, length),
        _ => RangeRequest::Full,
    }
}

fn from_start(start: u64, last: Option<u64>, length: u64) -> RangeRequest {
    if let Some(last) = last
        && last < start
    {
        return RangeRequest::Full;
    }
    if start >= length {
        return RangeRequest::Unsatisfiable;
    }
    let end = last.map_or(length, |last| last.saturating_add(1).min(length));
    RangeRequest::Partial(ByteRange { start, end })
}

fn suffix_range(suffix: u64, length: u64) -> RangeRequest {
    if suffix == 0 || length == 0 {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(ByteRange {
        start: length.saturating_sub(suffix),
        end: length,
    })
}

/// A last-byte-pos or suffix-length: any run of digits (leading zeros
/// included). A value past u64 is past any length, so it saturates.
fn parse_last(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start, end })
    }

    #[test]
    fn closed_open_and_suffix_ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), partial(0, 5));
        assert_eq!(parse_range("bytes=5-", 10), partial(5, 10));
        assert_eq!(parse_range("bytes=-3", 10), partial(7, 10));
        assert_eq!(parse_range("bytes=8-100", 10), partial(8, 10));
        assert_eq!(parse_range("bytes=-100", 10), partial(0, 10));
        // Found by fuzzing: long last-byte-pos values were read as absent.
        assert_eq!(
            parse_range("bytes=0-0000000000000000000004", 10),
            partial(0, 5)
        );
        assert_eq!(
            parse_range("bytes=2-99999999999999999999999", 10),
            partial(2, 10)
        );
        assert_eq!(
            parse_range("bytes=-0000000000000000000003", 10),
            partial(7, 10)
        );
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse_range("bytes=10-", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn malformed_or_multiple_ranges_serve_everything() {
        for value in [
            "bytes=5-1",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "bytes=5-00000000000000000000000",
            "bytes=5-abc",
            "bytes=0- 4",
        ] {
            assert_eq!(parse_range(value, 10), RangeRequest::Full, "{value}");
        }
    }
}

//! ZIP archives judged from their central directory, never by decompressing. Pure.
//!
//! The end-of-central-directory record (EOCD) sits in the last 22 + 65,535 bytes
//! (its comment is at most 64 KiB) and the central directory right before it, so
//! a bounded [`Tail`] of the stream holds everything needed: declared sizes of every
//! entry, their names and where their local headers are.

use strongroom_magic::{FileType, ooxml_kind};

use crate::settings::ZipLimits;

/// EOCD (22 bytes) plus the longest comment.
pub const EOCD_SEARCH: usize = 22 + 0xffff;

/// The last `cap` bytes of the stream seen so far. Grows to twice `cap` before
/// compacting, so each byte is moved at most once on average.
pub struct Tail {
    buf: Vec<u8>,
    cap: usize,
    total: u64,
}

impl Tail {
    pub fn new(cap: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            cap,
            total: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if chunk.len() >= self.cap {
            self.buf.clear();
            self.buf.extend_from_slice(&chunk[chunk.len() - self.cap..]);
            return;
        }
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > 2 * self.cap {
            self.buf.drain(..self.buf.len() - self.cap);
        }
    }

    /// The retained bytes (at most `cap`... plus up to `cap` more not yet compacted).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Absolute offset of `bytes()[0]`.
    pub fn start(&self) -> u64 {
        self.total - self.buf.len() as u64
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

/// What the central directory declares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directory {
    /// Bytes in the stream before the archive (0 for a plain ZIP; more for a ZIP
    /// appended to something else, such as a PDF).
    pub prefix: u64,
    /// Entry count from the EOCD.
    pub declared_entries: u64,
    pub entries: u64,
    pub total_compressed: u64,
    pub total_uncompressed: u64,
    /// The entry with the highest ratio among those at least `ratio_min_size`.
    pub worst_ratio: Option<(String, f64)>,
    /// Entries named like archives (.zip, .jar, .gz, ...), with the first few names.
    pub nested_archives: u64,
    pub nested_names: Vec<String>,
    /// Entries whose data overlaps another entry's (the "overlapping files" bomb).
    pub overlapping: u64,
    pub encrypted: u64,
    /// docx/xlsx/pptx when the names show an OOXML layout.
    pub ooxml: Option<FileType>,
}

impl Directory {
    pub fn ratio(&self) -> f64 {
        self.total_uncompressed as f64 / self.total_compressed.max(1) as f64
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// No EOCD record at the end of the stream.
    NoArchive,
    /// The EOCD declares more entries than allowed; the directory was not read.
    TooManyEntries {
        declared: u64,
    },
    /// The directory is larger than the tail window holds.
    DirectoryTooLarge {
        size: u64,
    },
    Malformed(String),
    Directory(Directory),
}

const NESTED_ARCHIVE_EXTS: &[&str] = &[
    "zip", "jar", "war", "ear", "apk", "ipa", "xpi", "7z", "rar", "gz", "tgz", "bz2", "tbz2", "xz",
    "txz", "zst", "lz4", "lzma", "tar", "cab", "iso", "cpio", "arj",
];

fn u16_at(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

fn u32_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[o..o + 4].try_into().unwrap()))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Finds the EOCD at the very end of `tail` (its comment must end the stream).
fn find_eocd(tail: &[u8]) -> Option<usize> {
    let lowest = tail.len().saturating_sub(EOCD_SEARCH);
    let mut end = tail.len();
    while let Some(found) = memchr::memmem::rfind(&tail[lowest..end], b"PK\x05\x06") {
        let pos = lowest + found;
        if pos + 22 <= tail.len() && pos + 22 + u16_at(tail, pos + 20) as usize == tail.len() {
            return Some(pos);
        }
        // Search again for a signature that starts before this one.
        end = pos + 3;
    }
    None
}

/// Parses the EOCD and central directory in `tail`, whose first byte is at
/// absolute offset `tail_start`.
pub fn parse(tail: &[u8], tail_start: u64, limits: &ZipLimits) -> Parsed {
    let Some(eocd) = find_eocd(tail) else {
        return Parsed::NoArchive;
    };
    let mut declared = u16_at(tail, eocd + 10);
    let mut cd_size = u32_at(tail, eocd + 12);
    let mut cd_offset = u32_at(tail, eocd + 16);
    // The directory ends where the ZIP64 EOCD record starts, if there is one.
    let mut cd_end = eocd;
    let zip64 = declared == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff;
    if eocd >= 20 && &tail[eocd - 20..eocd - 16] == b"PK\x06\x07" {
        let Some(record) = eocd.checked_sub(20 + 56) else {
            return Parsed::DirectoryTooLarge { size: cd_size };
        };
        if &tail[record..record + 4] != b"PK\x06\x06" {
            return Parsed::Malformed("ZIP64 locator without a ZIP64 end record before it".into());
        }
        declared = u64_at(tail, record + 32);
        cd_size = u64_at(tail, record + 40);
        cd_offset = u64_at(tail, record + 48);
        cd_end = record;
    } else if zip64 {
        return Parsed::Malformed("ZIP64 sizes without a ZIP64 locator".into());
    }
    if declared > limits.max_entries {
        return Parsed::TooManyEntries { declared };
    }
    if cd_size > cd_end as u64 || cd_size > limits.max_central_directory as u64 {
        return Parsed::DirectoryTooLarge { size: cd_size };
    }
    let cd_start = cd_end - cd_size as usize;
    let Some(prefix) = (tail_start + cd_start as u64).checked_sub(cd_offset) else {
        return Parsed::Malformed("central directory offset points past its position".into());
    };
    let mut dir = Directory {
        prefix,
        declared_entries: declared,
        ..Directory::default()
    };
    let cd = &tail[cd_start..cd_end];
    let mut pos = 0;
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut names: Vec<Vec<u8>> = Vec::new();
    while dir.entries < declared {
        let Some(header) = cd.get(pos..pos + 46) else {
            return Parsed::Malformed(format!(
                "central directory ends after {} of {declared} entries",
                dir.entries
            ));
        };
        if &header[..4] != b"PK\x01\x02" {
            return Parsed::Malformed(format!(
                "entry {} has no central header signature",
                dir.entries
            ));
        }
        let flags = u16_at(header, 8);
        let mut compressed = u32_at(header, 20);
        let mut uncompressed = u32_at(header, 24);
        let (name_len, extra_len, comment_len) = (
            u16_at(header, 28) as usize,
            u16_at(header, 30) as usize,
            u16_at(header, 32) as usize,
        );
        let mut local = u32_at(header, 42);
        let Some(name) = cd.get(pos + 46..pos + 46 + name_len) else {
            return Parsed::Malformed(format!(
                "entry {} name runs past the directory",
                dir.entries
            ));
        };
        let Some(extra) = cd.get(pos + 46 + name_len..pos + 46 + name_len + extra_len) else {
            return Parsed::Malformed(format!(
                "entry {} extra field runs past the directory",
                dir.entries
            ));
        };
        // ZIP64 extended information: the 8-byte values present are those whose
        // 32-bit field is saturated, in this order.
        if let Some(z64) = zip64_extra(extra) {
            let mut at = 0;
            for field in [&mut uncompressed, &mut compressed, &mut local] {
                if *field == 0xffff_ffff && at + 8 <= z64.len() {
                    *field = u64_at(z64, at);
                    at += 8;
                }
            }
        }
        if flags & 1 != 0 {
            dir.encrypted += 1;
        }
        dir.entries += 1;
        dir.total_compressed = dir.total_compressed.saturating_add(compressed);
        dir.total_uncompressed = dir.total_uncompressed.saturating_add(uncompressed);
        let name_text = String::from_utf8_lossy(name).into_owned();
        if uncompressed >= limits.ratio_min_size {
            let ratio = uncompressed as f64 / compressed.max(1) as f64;
            if dir.worst_ratio.as_ref().is_none_or(|(_, r)| ratio > *r) {
                dir.worst_ratio = Some((name_text.clone(), ratio));
            }
        }
        let lower = name_text.to_ascii_lowercase();
        if lower
            .rsplit_once('.')
            .is_some_and(|(_, ext)| NESTED_ARCHIVE_EXTS.contains(&ext))
        {
            dir.nested_archives += 1;
            if dir.nested_names.len() < 4 {
                dir.nested_names.push(name_text);
            }
        }
        spans.push((local, compressed));
        if names.len() < 64 {
            names.push(name.to_vec());
        }
        pos += 46 + name_len + extra_len + comment_len;
    }
    // Honest archives store each entry's data after its own local header and before
    // the next; data reaching into the next entry means entries share bytes.
    spans.sort_unstable();
    dir.overlapping = spans
        .windows(2)
        .filter(|w| w[1].0 < w[0].0.saturating_add(w[0].1))
        .count() as u64;
    dir.ooxml = ooxml_kind(names.iter().map(Vec::as_slice));
    Parsed::Directory(dir)
}

fn zip64_extra(mut extra: &[u8]) -> Option<&[u8]> {
    while extra.len() >= 4 {
        let (id, len) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
        let body = extra.get(4..4 + len)?;
        if id == 0x0001 {
            return Some(body);
        }
        extra = &extra[4 + len..];
    }
    None
}

/// Why an archive is judged a decompression bomb, if it is.
pub fn bomb_reason(dir: &Directory, limits: &ZipLimits) -> Option<String> {
    if dir.overlapping > 0 {
        return Some(format!(
            "{} entries overlap other entries' data",
            dir.overlapping
        ));
    }
    if dir.total_uncompressed > limits.max_total_uncompressed {
        return Some(format!(
            "declares {} bytes uncompressed, limit {}",
            dir.total_uncompressed, limits.max_total_uncompressed
        ));
    }
    if let Some((name, ratio)) = &dir.worst_ratio
        && *ratio > limits.max_ratio
    {
        return Some(format!(
            "entry '{name}' expands {ratio:.0}:1, limit {:.0}:1",
            limits.max_ratio
        ));
    }
    if dir.total_uncompressed >= limits.ratio_min_size && dir.ratio() > limits.max_ratio {
        return Some(format!(
            "archive expands {:.0}:1, limit {:.0}:1",
            dir.ratio(),
            limits.max_ratio
        ));
    }
    if dir.nested_archives > limits.max_nested_archives {
        return Some(format!(
            "{} nested archives ({}...), limit {}",
            dir.nested_archives,
            dir.nested_names.join(", "),
            limits.max_nested_archives
        ));
    }
    None
}

/// Builders for ZIP bytes, shared by the unit and fixture tests.
#[doc(hidden)]
pub mod build {
    /// One entry: name, declared compressed and uncompressed sizes, and the stored
    /// bytes (which need not match the declared sizes: only the directory is judged).
    pub struct Entry<'a> {
        pub name: &'a str,
        pub compressed: u64,
        pub uncompressed: u64,
        pub data: &'a [u8],
    }

    impl<'a> Entry<'a> {
        pub fn stored(name: &'a str, data: &'a [u8]) -> Self {
            Entry {
                name,
                compressed: data.len() as u64,
                uncompressed: data.len() as u64,
                data,
            }
        }
    }

    /// A ZIP with local headers, data, central directory and EOCD. Sizes at or
    /// over 4 GiB get ZIP64 extras and a ZIP64 end record. `overlap` points every
    /// central entry at the first local header.
    pub fn zip(entries: &[Entry<'_>], comment: &[u8], overlap: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        let mut needs64 = false;
        for e in entries {
            let offset = if overlap { 0 } else { out.len() as u64 };
            let big = e.compressed >= 0xffff_ffff || e.uncompressed >= 0xffff_ffff;
            needs64 |= big;
            let sat = |v: u64| if big { 0xffff_ffffu32 } else { v as u32 };
            out.extend_from_slice(b"PK\x03\x04\x14\0\0\0\x08\0\0\0\0\0\0\0\0\0");
            out.extend_from_slice(&sat(e.compressed).to_le_bytes());
            out.extend_from_slice(&sat(e.uncompressed).to_le_bytes());
            out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(e.name.as_bytes());
            out.extend_from_slice(e.data);
            let extra: Vec<u8> = if big {
                let mut x = vec![1, 0, 16, 0];
                x.extend_from_slice(&e.uncompressed.to_le_bytes());
                x.extend_from_slice(&e.compressed.to_le_bytes());
                x
            } else {
                Vec::new()
            };
            central.extend_from_slice(b"PK\x01\x02\x14\0\x14\0\0\0\x08\0\0\0\0\0\0\0\0\0");
            central.extend_from_slice(&sat(e.compressed).to_le_bytes());
            central.extend_from_slice(&sat(e.uncompressed).to_le_bytes());
            central.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            central.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 10]); // comment len, disk, internal and external attrs
            central.extend_from_slice(&(offset as u32).to_le_bytes());
            central.extend_from_slice(e.name.as_bytes());
            central.extend_from_slice(&extra);
        }
        let cd_offset = out.len() as u64;
        out.extend_from_slice(&central);
        let n = entries.len() as u64;
        if needs64 {
            let record = out.len() as u64;
            out.extend_from_slice(b"PK\x06\x06");
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(central.len() as u64).to_le_bytes());
            out.extend_from_slice(&cd_offset.to_le_bytes());
            out.extend_from_slice(b"PK\x06\x07\0\0\0\0");
            out.extend_from_slice(&record.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        let n16 = if needs64 { 0xffff } else { n as u16 };
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&n16.to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        let off32 = if needs64 {
            0xffff_ffff
        } else {
            cd_offset as u32
        };
        out.extend_from_slice(&off32.to_le_bytes());
        out.extend_from_slice(&(comment.len() as u16).to_le_bytes());
        out.extend_from_slice(comment);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::{Entry, zip};
    use super::*;

    fn parse_all(bytes: &[u8]) -> Parsed {
        parse(bytes, 0, &ZipLimits::default())
    }

    fn dir(p: Parsed) -> Directory {
        match p {
            Parsed::Directory(d) => d,
            other => panic!("not a directory: {other:?}"),
        }
    }

    #[test]
    fn reads_declared_sizes_and_names() {
        let bytes = zip(
            &[
                Entry::stored("[Content_Types].xml", b"<Types/>"),
                Entry::stored("word/document.xml", b"<w/>"),
            ],
            b"a comment with PK\x05\x06 inside",
            false,
        );
        let d = dir(parse_all(&bytes));
        assert_eq!((d.entries, d.total_uncompressed, d.prefix), (2, 12, 0));
        assert_eq!(d.ooxml, Some(FileType::Docx));
        assert_eq!(bomb_reason(&d, &ZipLimits::default()), None);
    }

    #[test]
    fn high_ratio_entry_is_a_bomb() {
        let data = [0u8; 1000];
        let bytes = zip(
            &[Entry {
                name: "zeros.bin",
                compressed: 1000,
                uncompressed: 1_000_000_000,
                data: &data,
            }],
            b"",
            false,
        );
        let d = dir(parse_all(&bytes));
        let reason = bomb_reason(&d, &ZipLimits::default()).unwrap();
        assert!(reason.contains("'zeros.bin' expands 1000000:1"), "{reason}");
    }

    #[test]
    fn zip64_sizes_are_read_from_the_extra_field() {
        let data = [0u8; 10];
        let bytes = zip(
            &[Entry {
                name: "huge",
                compressed: 10,
                uncompressed: 5 << 40,
                data: &data,
            }],
            b"",
            false,
        );
        let d = dir(parse_all(&bytes));
        assert_eq!(d.total_uncompressed, 5 << 40);
        assert!(
            bomb_reason(&d, &ZipLimits::default())
                .unwrap()
                .contains("uncompressed")
        );
    }

    #[test]
    fn overlapping_entries_are_a_bomb() {
        let data = [0u8; 100];
        let e = |name| Entry {
            name,
            compressed: 100,
            uncompressed: 100,
            data: &data,
        };
        let d = dir(parse_all(&zip(&[e("a"), e("b"), e("c")], b"", true)));
        assert_eq!(d.overlapping, 2);
        assert!(
            bomb_reason(&d, &ZipLimits::default())
                .unwrap()
                .contains("overlap")
        );
    }

    #[test]
    fn nested_archives_and_entry_counts() {
        let names: Vec<String> = (0..12).map(|i| format!("level1/{i}.zip")).collect();
        let entries: Vec<Entry<'_>> = names.iter().map(|n| Entry::stored(n, b"PK")).collect();
        let d = dir(parse_all(&zip(&entries, b"", false)));
        assert_eq!(d.nested_archives, 12);
        assert!(
            bomb_reason(&d, &ZipLimits::default())
                .unwrap()
                .contains("12 nested archives")
        );
        let few = ZipLimits {
            max_entries: 5,
            ..ZipLimits::default()
        };
        assert_eq!(
            parse(&zip(&entries, b"", false), 0, &few),
            Parsed::TooManyEntries { declared: 12 }
        );
    }

    #[test]
    fn appended_archive_has_a_prefix_and_a_partial_tail_still_parses() {
        let mut bytes = b"%PDF-1.4\n".to_vec();
        bytes.extend(vec![b' '; 5000]);
        bytes.extend(zip(&[Entry::stored("x.txt", b"hello")], b"", false));
        let d = dir(parse_all(&bytes));
        assert_eq!(d.prefix, 5009);
        // Only the last 200 bytes in the tail, starting at their real offset.
        let start = bytes.len() - 200;
        let d2 = dir(parse(&bytes[start..], start as u64, &ZipLimits::default()));
        assert_eq!(d2.prefix, 5009);
    }

    #[test]
    fn directory_larger_than_the_window_is_reported() {
        let bytes = zip(&[Entry::stored("x.txt", b"hello")], b"", false);
        let tail = &bytes[bytes.len() - 30..];
        assert!(matches!(
            parse(tail, 0, &ZipLimits::default()),
            Parsed::DirectoryTooLarge { .. }
        ));
        assert_eq!(parse_all(b"just text"), Parsed::NoArchive);
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let chunks = [
            &b"0123"[..],
            b"456789ab",
            b"cdefghijklmnopqrst",
            b"uv",
            b"wxyz0123456",
        ];
        let all = chunks.concat();
        let mut t = Tail::new(10);
        for (i, chunk) in chunks.iter().enumerate() {
            t.push(chunk);
            let seen: usize = chunks[..=i].iter().map(|c| c.len()).sum();
            let kept = t.bytes();
            assert!(kept.len() >= 10.min(seen) && kept.len() <= 20, "{i}");
            assert_eq!(kept, &all[seen - kept.len()..seen]);
            assert_eq!(t.start() + kept.len() as u64, seen as u64);
        }
    }
}

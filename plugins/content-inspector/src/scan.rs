//! Streaming marker scan: the EICAR test signature and executable or script headers
//! anywhere in the upload, including across chunk boundaries. Pure.
//!
//! Each chunk is scanned together with the last [`OVERLAP`] bytes before it, and a
//! match is counted in the window where it starts before the final `OVERLAP` bytes;
//! matches starting later are counted by the next window (or by `finish`). So every
//! position is judged exactly once, with at least `OVERLAP` bytes after it in view
//! (enough to follow a DOS header's pointer to its PE header), whatever the chunk
//! sizes.

use memchr::memmem::Finder;
use strongroom_magic::pe_header_at;

/// Bytes carried from one chunk to the next. Covers the longest marker (EICAR, 68
/// bytes) and the furthest PE header `pe_header_at` follows (0x1000 + 4).
pub const OVERLAP: usize = 8192;

/// The EICAR anti-malware test file (68 bytes).
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Offsets kept per marker; the count goes on past this.
const MAX_OFFSETS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Marker {
    Eicar,
    /// "\x7fELF" with a valid class, byte order and version.
    ElfHeader,
    /// "MZ" whose e_lfanew points at "PE\0\0".
    PeHeader,
    /// The DOS stub message every PE linker writes.
    DosStub,
    /// `<script` (any case) followed by whitespace, `>` or `/`.
    ScriptTag,
    /// PDF actions that run code or programs.
    PdfJavaScript,
    PdfLaunch,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hits {
    pub count: u64,
    /// The first few absolute offsets, ascending.
    pub offsets: Vec<u64>,
}

impl Hits {
    fn record(&mut self, offset: u64) {
        self.count += 1;
        if self.offsets.len() < MAX_OFFSETS {
            self.offsets.push(offset);
        }
    }

    pub fn first(&self) -> Option<u64> {
        self.offsets.first().copied()
    }

    /// The first offset past `after`, if one was kept.
    pub fn first_after(&self, after: u64) -> Option<u64> {
        self.offsets.iter().copied().find(|&o| o > after)
    }
}

pub struct Scanner {
    eicar: bool,
    finders: Vec<(Marker, Finder<'static>)>,
    /// Bytes not yet judged: the tail of the previous window.
    carry: Vec<u8>,
    /// Reused window buffer: carry followed by the new chunk.
    window: Vec<u8>,
    /// Absolute offset of `carry[0]`.
    carry_offset: u64,
    hits: Vec<(Marker, Hits)>,
}

impl Scanner {
    pub fn new(eicar: bool) -> Scanner {
        let mut finders = vec![
            (Marker::ElfHeader, Finder::new(b"\x7fELF")),
            (Marker::PeHeader, Finder::new(b"MZ")),
            (
                Marker::DosStub,
                Finder::new(b"This program cannot be run in DOS mode"),
            ),
            (Marker::PdfJavaScript, Finder::new(b"/JavaScript")),
            (Marker::PdfLaunch, Finder::new(b"/Launch")),
        ];
        if eicar {
            finders.insert(0, (Marker::Eicar, Finder::new(EICAR)));
        }
        Scanner {
            eicar,
            finders,
            carry: Vec::with_capacity(OVERLAP),
            window: Vec::new(),
            carry_offset: 0,
            hits: Vec::new(),
        }
    }

    /// Scans the next chunk. Returns the offset of an EICAR signature if this window
    /// found the first one.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<u64> {
        let had_eicar = self.hits(Marker::Eicar).is_some();
        let mut window = std::mem::take(&mut self.window);
        window.clear();
        window.extend_from_slice(&self.carry);
        window.extend_from_slice(chunk);
        let judged = window.len().saturating_sub(OVERLAP);
        self.scan(&window, judged);
        self.carry.clear();
        self.carry.extend_from_slice(&window[judged..]);
        self.carry_offset += judged as u64;
        self.window = window;
        if had_eicar {
            None
        } else {
            self.hits(Marker::Eicar).and_then(Hits::first)
        }
    }

    /// Judges the bytes still carried; call once after the last chunk.
    pub fn finish(&mut self) {
        let carry = std::mem::take(&mut self.carry);
        self.scan(&carry, carry.len());
        self.carry_offset += carry.len() as u64;
    }

    pub fn eicar_enabled(&self) -> bool {
        self.eicar
    }

    pub fn hits(&self, marker: Marker) -> Option<&Hits> {
        self.hits.iter().find(|(m, _)| *m == marker).map(|(_, h)| h)
    }

    /// Records matches in `window` that start before `judged`.
    fn scan(&mut self, window: &[u8], judged: usize) {
        let base = self.carry_offset;
        let mut found: Vec<(Marker, u64)> = Vec::new();
        for (marker, finder) in &self.finders {
            for pos in finder.find_iter(window).take_while(|&p| p < judged) {
                let confirmed = match marker {
                    Marker::ElfHeader => elf_header_at(window, pos),
                    Marker::PeHeader => pe_header_at(window, pos),
                    _ => true,
                };
                if confirmed {
                    found.push((*marker, base + pos as u64));
                }
            }
        }
        for pos in memchr::memchr_iter(b'<', window).take_while(|&p| p < judged) {
            if script_tag_at(window, pos) {
                found.push((Marker::ScriptTag, base + pos as u64));
            }
        }
        for (marker, offset) in found {
            match self.hits.iter_mut().find(|(m, _)| *m == marker) {
                Some((_, hits)) => hits.record(offset),
                None => {
                    let mut hits = Hits::default();
                    hits.record(offset);
                    self.hits.push((marker, hits));
                }
            }
        }
    }
}

/// ELF identification: class 1|2, data 1|2, version 1. Random bytes pass this with
/// odds of about 2^-51, so a hit inside an image is not noise.
fn elf_header_at(w: &[u8], pos: usize) -> bool {
    matches!(w.get(pos + 4..pos + 7), Some([1 | 2, 1 | 2, 1]))
}

fn script_tag_at(w: &[u8], pos: usize) -> bool {
    let Some(tag) = w.get(pos + 1..pos + 8) else {
        return false;
    };
    tag[..6].eq_ignore_ascii_case(b"script")
        && matches!(tag[6], b' ' | b'\t' | b'\n' | b'\r' | b'>' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in(data: &[u8], chunk: usize) -> Scanner {
        let mut s = Scanner::new(true);
        for c in data.chunks(chunk) {
            s.feed(c);
        }
        s.finish();
        s
    }

    #[test]
    fn eicar_is_found_once_whatever_the_chunking() {
        let mut data = vec![b'.'; 20_000];
        data[9_000..9_068].copy_from_slice(EICAR);
        for chunk in [1, 7, 67, 68, 4096, 8192, 8193, 9_030, 20_000] {
            let s = scan_in(&data, chunk);
            let hits = s
                .hits(Marker::Eicar)
                .unwrap_or_else(|| panic!("chunk {chunk}"));
            assert_eq!(
                (hits.count, hits.first()),
                (1, Some(9_000)),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn feed_reports_eicar_when_first_judged() {
        let mut s = Scanner::new(true);
        let mut a = vec![0u8; 20_000];
        a[19_990..].copy_from_slice(&EICAR[..10]);
        let mut b = EICAR[10..].to_vec();
        b.extend_from_slice(&[0u8; 20_000]);
        assert_eq!(s.feed(&a), None);
        assert_eq!(s.feed(&b), Some(19_990));
        assert_eq!(s.feed(&[0u8; 100]), None, "reported once");
    }

    #[test]
    fn eicar_can_be_switched_off() {
        let mut s = Scanner::new(false);
        s.feed(EICAR);
        s.finish();
        assert!(s.hits(Marker::Eicar).is_none());
    }

    #[test]
    fn executable_headers_are_confirmed_not_just_magic() {
        let mut data = vec![0x55u8; 50_000];
        data[1000..1004].copy_from_slice(b"\x7fELF"); // no valid ident after it
        data[2000..2007].copy_from_slice(b"\x7fELF\x02\x01\x01");
        data[3000..3002].copy_from_slice(b"MZ"); // lfanew garbage
        data[10_000..10_002].copy_from_slice(b"MZ");
        data[10_000 + 0x3c..10_000 + 0x40].copy_from_slice(&0x100u32.to_le_bytes());
        data[10_000 + 0x100..10_000 + 0x104].copy_from_slice(b"PE\0\0");
        data[20_000..20_008].copy_from_slice(b"<ScRiPt>");
        data[21_000..21_010].copy_from_slice(b"<scripture");
        let s = scan_in(&data, 9_000);
        assert_eq!(s.hits(Marker::ElfHeader).unwrap().offsets, [2000]);
        assert_eq!(s.hits(Marker::PeHeader).unwrap().offsets, [10_000]);
        assert_eq!(s.hits(Marker::ScriptTag).unwrap().offsets, [20_000]);
    }
}

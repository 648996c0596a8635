//! File types by content: magic bytes at fixed offsets, never the client's claims.
//! Pure functions over byte slices, shared by the content-inspector and anomaly
//! plugins so both name types the same way (the host counts `detected-type` labels
//! per tenant, and anomaly compares against those counts). No I/O, no dependencies.

/// How many leading bytes [`sniff`] wants. More is fine (OOXML detection reads the
/// ZIP local headers in whatever it is given); less may leave a type undetected.
pub const SNIFF_LEN: usize = 8192;

/// A type detected from content. [`FileType::name`] is the stable label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Pdf,
    Png,
    Jpeg,
    Gif,
    Webp,
    Zip,
    Docx,
    Xlsx,
    Pptx,
    Gzip,
    Tar,
    Elf,
    /// MZ with a valid PE header.
    Pe,
    /// MZ without a PE header (a DOS executable, or a PE cut short).
    Msdos,
    MachO,
    JavaClass,
    /// A `#!` script.
    Script,
    Html,
    Svg,
    Mp4,
    Mov,
    Heic,
    /// UTF-8 text with no other signature.
    Text,
    Unknown,
}

/// Every type, for tables and tests.
pub const ALL_TYPES: &[FileType] = &[
    FileType::Pdf,
    FileType::Png,
    FileType::Jpeg,
    FileType::Gif,
    FileType::Webp,
    FileType::Zip,
    FileType::Docx,
    FileType::Xlsx,
    FileType::Pptx,
    FileType::Gzip,
    FileType::Tar,
    FileType::Elf,
    FileType::Pe,
    FileType::Msdos,
    FileType::MachO,
    FileType::JavaClass,
    FileType::Script,
    FileType::Html,
    FileType::Svg,
    FileType::Mp4,
    FileType::Mov,
    FileType::Heic,
    FileType::Text,
    FileType::Unknown,
];

const ZIP_MEDIA: &[&str] = &[
    "application/zip",
    "application/x-zip-compressed",
    "application/x-zip",
];
const EXE_EXTS: &[&str] = &[
    "exe", "dll", "sys", "scr", "com", "efi", "ocx", "cpl", "drv",
];
const EXE_MEDIA: &[&str] = &[
    "application/vnd.microsoft.portable-executable",
    "application/x-msdownload",
    "application/x-dosexec",
    "application/x-ms-dos-executable",
    "application/x-msdos-program",
];

impl FileType {
    pub fn name(self) -> &'static str {
        match self {
            FileType::Pdf => "pdf",
            FileType::Png => "png",
            FileType::Jpeg => "jpeg",
            FileType::Gif => "gif",
            FileType::Webp => "webp",
            FileType::Zip => "zip",
            FileType::Docx => "docx",
            FileType::Xlsx => "xlsx",
            FileType::Pptx => "pptx",
            FileType::Gzip => "gzip",
            FileType::Tar => "tar",
            FileType::Elf => "elf",
            FileType::Pe => "pe",
            FileType::Msdos => "msdos",
            FileType::MachO => "macho",
            FileType::JavaClass => "java-class",
            FileType::Script => "script",
            FileType::Html => "html",
            FileType::Svg => "svg",
            FileType::Mp4 => "mp4",
            FileType::Mov => "mov",
            FileType::Heic => "heic",
            FileType::Text => "text",
            FileType::Unknown => "unknown",
        }
    }

    pub fn from_name(name: &str) -> Option<FileType> {
        ALL_TYPES.iter().copied().find(|t| t.name() == name)
    }

    /// Media types a client may honestly declare for this type (lowercase, no
    /// parameters). Text accepts any `text/*` besides these.
    pub fn media_types(self) -> &'static [&'static str] {
        match self {
            FileType::Pdf => &["application/pdf", "application/x-pdf"],
            FileType::Png => &["image/png"],
            FileType::Jpeg => &["image/jpeg", "image/jpg", "image/pjpeg"],
            FileType::Gif => &["image/gif"],
            FileType::Webp => &["image/webp"],
            FileType::Zip => ZIP_MEDIA,
            FileType::Docx => &[
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
                "application/vnd.ms-word.document.macroenabled.12",
                "application/vnd.ms-word.template.macroenabled.12",
            ],
            FileType::Xlsx => &[
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.template",
                "application/vnd.ms-excel.sheet.macroenabled.12",
                "application/vnd.ms-excel.template.macroenabled.12",
            ],
            FileType::Pptx => &[
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
                "application/vnd.openxmlformats-officedocument.presentationml.template",
                "application/vnd.ms-powerpoint.presentation.macroenabled.12",
            ],
            FileType::Gzip => &[
                "application/gzip",
                "application/x-gzip",
                "application/x-compressed-tar",
            ],
            FileType::Tar => &["application/x-tar"],
            FileType::Elf => &[
                "application/x-elf",
                "application/x-executable",
                "application/x-sharedlib",
                "application/x-object",
            ],
            FileType::Pe | FileType::Msdos => EXE_MEDIA,
            FileType::MachO => &[
                "application/x-mach-binary",
                "application/x-mach-o-executable",
            ],
            FileType::JavaClass => &["application/java-vm", "application/x-java-class"],
            FileType::Script => &[
                "text/x-shellscript",
                "application/x-sh",
                "application/x-shellscript",
                "text/x-python",
                "text/x-script.python",
                "application/x-python-code",
                "text/x-perl",
                "application/x-perl",
                "text/x-ruby",
                "application/x-ruby",
                "application/javascript",
                "text/javascript",
            ],
            FileType::Html => &["text/html", "application/xhtml+xml"],
            FileType::Svg => &["image/svg+xml"],
            FileType::Mp4 => &[
                "video/mp4",
                "audio/mp4",
                "application/mp4",
                "video/x-m4v",
                "audio/x-m4a",
            ],
            FileType::Mov => &["video/quicktime"],
            FileType::Heic => &[
                "image/heic",
                "image/heif",
                "image/heic-sequence",
                "image/heif-sequence",
            ],
            FileType::Text => &[
                "application/json",
                "application/xml",
                "application/csv",
                "application/x-ndjson",
                "application/yaml",
                "application/x-yaml",
                "application/toml",
                "application/sql",
                "application/javascript",
                "application/ld+json",
            ],
            FileType::Unknown => &[],
        }
    }

    /// File name extensions (lowercase, no dot) that honestly name this type.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            FileType::Pdf => &["pdf"],
            FileType::Png => &["png"],
            FileType::Jpeg => &["jpg", "jpeg", "jpe", "jfif", "pjpeg"],
            FileType::Gif => &["gif"],
            FileType::Webp => &["webp"],
            FileType::Zip => &["zip"],
            FileType::Docx => &["docx", "docm", "dotx", "dotm"],
            FileType::Xlsx => &["xlsx", "xlsm", "xltx", "xltm"],
            FileType::Pptx => &["pptx", "pptm", "potx", "potm", "ppsx", "ppsm"],
            FileType::Gzip => &["gz", "tgz", "gzip"],
            FileType::Tar => &["tar"],
            FileType::Elf => &["elf", "so", "bin", "o", "out", "run", "axf", "ko"],
            FileType::Pe | FileType::Msdos => EXE_EXTS,
            FileType::MachO => &["dylib", "bundle", "o", "macho"],
            FileType::JavaClass => &["class"],
            FileType::Script => &[
                "sh", "bash", "zsh", "ksh", "csh", "py", "pl", "rb", "js", "mjs", "php", "lua",
                "tcl", "awk",
            ],
            FileType::Html => &["html", "htm", "xhtml", "shtml"],
            FileType::Svg => &["svg"],
            FileType::Mp4 => &["mp4", "m4v", "m4a", "m4b", "3gp", "3g2"],
            FileType::Mov => &["mov", "qt"],
            FileType::Heic => &["heic", "heif", "hif"],
            FileType::Text => &[
                "txt", "text", "csv", "tsv", "json", "ndjson", "jsonl", "xml", "md", "markdown",
                "log", "yaml", "yml", "toml", "ini", "cfg", "conf", "rst", "sql", "tex", "srt",
                "vtt", "js", "css", "py", "sh", "rs", "c", "h", "go", "java",
            ],
            FileType::Unknown => &[],
        }
    }

    /// Code that runs when opened or executed: native binaries, bytecode, scripts.
    pub fn is_executable(self) -> bool {
        matches!(
            self,
            FileType::Elf
                | FileType::Pe
                | FileType::Msdos
                | FileType::MachO
                | FileType::JavaClass
                | FileType::Script
        )
    }

    /// Documents a browser renders with scripting.
    pub fn is_active_content(self) -> bool {
        matches!(self, FileType::Html | FileType::Svg)
    }

    /// ZIP containers, including OOXML documents.
    pub fn is_zip(self) -> bool {
        matches!(
            self,
            FileType::Zip | FileType::Docx | FileType::Xlsx | FileType::Pptx
        )
    }

    /// Media and documents whose body should never hold an executable or a script:
    /// where one turns up past the header, the file is a polyglot.
    pub fn is_passive_container(self) -> bool {
        matches!(
            self,
            FileType::Pdf
                | FileType::Png
                | FileType::Jpeg
                | FileType::Gif
                | FileType::Webp
                | FileType::Mp4
                | FileType::Mov
                | FileType::Heic
        )
    }

    /// Types whose bytes are mostly printable text (low entropy).
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            FileType::Text | FileType::Html | FileType::Svg | FileType::Script
        )
    }

    /// Whether a client that declared media type `media` (lowercase essence) was
    /// honest about this type. OOXML may also be declared as ZIP; text as any `text/*`.
    pub fn accepts_media_type(self, media: &str) -> bool {
        self.media_types().contains(&media)
            || (self.is_zip() && ZIP_MEDIA.contains(&media))
            || (self == FileType::Text && media.starts_with("text/") && !is_known_media_type(media))
    }

    /// Whether a client that named the file `*.ext` was honest about this type.
    pub fn accepts_extension(self, ext: &str) -> bool {
        self.extensions().contains(&ext) || (self.is_zip() && ext == "zip")
    }
}

/// Whether some type lists `media` as its own.
pub fn is_known_media_type(media: &str) -> bool {
    ALL_TYPES.iter().any(|t| t.media_types().contains(&media))
}

/// Whether declaring `media` says something checkable about the content: a media
/// type of ours, or any `text/`, `image/`, `audio/` or `video/` type. Generic
/// declarations (`application/octet-stream`, vendor types) claim nothing.
pub fn is_checkable_media_type(media: &str) -> bool {
    is_known_media_type(media)
        || ["text/", "image/", "audio/", "video/"]
            .iter()
            .any(|top| media.starts_with(top))
}

/// Whether some type claims the extension `ext`.
pub fn is_known_extension(ext: &str) -> bool {
    ALL_TYPES.iter().any(|t| t.extensions().contains(&ext))
}

/// Detects the type of an upload from its first bytes (ideally [`SNIFF_LEN`] or
/// more). ZIP files whose first local headers show an OOXML layout come back as
/// docx/xlsx/pptx; other ZIPs as `Zip` (the content-inspector refines those from
/// the central directory at the end of the upload).
pub fn sniff(head: &[u8]) -> FileType {
    if let Some(t) = sniff_binary(head) {
        return t;
    }
    sniff_markup_or_text(head)
}

fn sniff_binary(h: &[u8]) -> Option<FileType> {
    let starts = |magic: &[u8]| h.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| h.get(offset..offset + magic.len()) == Some(magic);

    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some(FileType::Png);
    }
    if starts(b"\xff\xd8\xff") {
        return Some(FileType::Jpeg);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some(FileType::Gif);
    }
    if starts(b"RIFF") && at(8, b"WEBP") {
        return Some(FileType::Webp);
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Some(ooxml_kind(zip_local_names(h)).unwrap_or(FileType::Zip));
    }
    if starts(b"\x1f\x8b") {
        return Some(FileType::Gzip);
    }
    if at(257, b"ustar") {
        return Some(FileType::Tar);
    }
    if starts(b"\x7fELF") {
        return Some(FileType::Elf);
    }
    if starts(b"MZ") {
        return Some(if pe_header_at(h, 0) {
            FileType::Pe
        } else {
            FileType::Msdos
        });
    }
    if let Some(t) = sniff_macho_or_class(h) {
        return Some(t);
    }
    if at(4, b"ftyp") {
        return Some(match h.get(8..12) {
            Some(b"qt  ") => FileType::Mov,
            Some(b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1") => {
                FileType::Heic
            }
            _ => FileType::Mp4,
        });
    }
    // PDF readers accept junk before the header within the first KiB.
    if find(&h[..h.len().min(1024)], b"%PDF-").is_some() {
        return Some(FileType::Pdf);
    }
    if starts(b"#!") {
        return Some(FileType::Script);
    }
    None
}

fn sniff_macho_or_class(h: &[u8]) -> Option<FileType> {
    let magic = h.get(..4)?;
    match magic {
        b"\xfe\xed\xfa\xce" | b"\xce\xfa\xed\xfe" | b"\xfe\xed\xfa\xcf" | b"\xcf\xfa\xed\xfe" => {
            Some(FileType::MachO)
        }
        b"\xca\xfe\xba\xbf" | b"\xbf\xba\xfe\xca" | b"\xbe\xba\xfe\xca" => Some(FileType::MachO),
        // Fat Mach-O and Java classes share CAFEBABE. A fat header's next word is the
        // architecture count (small); a class file's is its version (major >= 45),
        // the test file(1) uses.
        b"\xca\xfe\xba\xbe" => {
            let next = u32::from_be_bytes(h.get(4..8)?.try_into().ok()?);
            Some(if next < 20 {
                FileType::MachO
            } else {
                FileType::JavaClass
            })
        }
        _ => None,
    }
}

/// Whether `h[mz..]` starts a DOS header whose `e_lfanew` points at "PE\0\0" within `h`.
pub fn pe_header_at(h: &[u8], mz: usize) -> bool {
    let Some(field) = h.get(mz + 0x3c..mz + 0x40) else {
        return false;
    };
    let lfanew = u32::from_le_bytes(field.try_into().unwrap()) as usize;
    // Real linkers put the PE header within the first few KiB.
    (0x40..=0x1000).contains(&lfanew) && h.get(mz + lfanew..mz + lfanew + 4) == Some(b"PE\0\0")
}

fn sniff_markup_or_text(h: &[u8]) -> FileType {
    let body = h.strip_prefix(b"\xef\xbb\xbf").unwrap_or(h);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let body = &body[start..];
    if body.first() == Some(&b'<') {
        let window = lowercase(&body[..body.len().min(4096)]);
        let w = window.as_slice();
        let lead_ok = w.starts_with(b"<?xml")
            || w.starts_with(b"<svg")
            || w.starts_with(b"<!--")
            || w.starts_with(b"<!doctype svg");
        if lead_ok && find(w, b"<svg").is_some() {
            return FileType::Svg;
        }
        let first_kib = &w[..w.len().min(1024)];
        if [
            &b"<!doctype html"[..],
            b"<html",
            b"<head",
            b"<body",
            b"<script",
            b"<iframe",
        ]
        .iter()
        .any(|tag| find(first_kib, tag).is_some())
        {
            return FileType::Html;
        }
    }
    if looks_like_text(h) {
        FileType::Text
    } else {
        FileType::Unknown
    }
}

/// UTF-8 (a sequence cut at the end is fine) with no NUL and few control bytes.
pub fn looks_like_text(h: &[u8]) -> bool {
    if h.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(h) {
        Ok(_) => true,
        // Only an incomplete sequence in the last 3 bytes is forgiven.
        Err(e) => e.error_len().is_none() && h.len() - e.valid_up_to() < 4,
    };
    if !valid {
        return false;
    }
    let controls = h
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b))
        .count();
    !h.contains(&0) && controls * 100 <= h.len()
}

/// The OOXML flavour of a ZIP from its entry names, if it is one: a
/// `[Content_Types].xml` part plus a `word/`, `xl/` or `ppt/` tree.
pub fn ooxml_kind<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> Option<FileType> {
    let (mut content_types, mut kind) = (false, None);
    for name in names {
        if name == b"[Content_Types].xml" {
            content_types = true;
        } else if kind.is_none() {
            if name.starts_with(b"word/") {
                kind = Some(FileType::Docx);
            } else if name.starts_with(b"xl/") {
                kind = Some(FileType::Xlsx);
            } else if name.starts_with(b"ppt/") {
                kind = Some(FileType::Pptx);
            }
        }
    }
    if content_types { kind } else { None }
}

/// Entry names from the ZIP local file headers at the start of `h`, as far as they
/// can be walked (an entry with a trailing data descriptor and no size ends the walk).
pub fn zip_local_names(h: &[u8]) -> Vec<&[u8]> {
    const MAX_ENTRIES: usize = 256;
    let mut names = Vec::new();
    let mut pos = 0usize;
    while names.len() < MAX_ENTRIES && h.get(pos..pos + 4) == Some(b"PK\x03\x04") {
        let Some(header) = h.get(pos..pos + 30) else {
            break;
        };
        let u16_at = |o: usize| usize::from(u16::from_le_bytes([header[o], header[o + 1]]));
        let flags = u16_at(6);
        let compressed = u32::from_le_bytes(header[18..22].try_into().unwrap()) as usize;
        let (name_len, extra_len) = (u16_at(26), u16_at(28));
        let Some(name) = h.get(pos + 30..pos + 30 + name_len) else {
            break;
        };
        names.push(name);
        if flags & 0x8 != 0 && compressed == 0 {
            break;
        }
        pos += 30 + name_len + extra_len + compressed;
    }
    names
}

fn lowercase(b: &[u8]) -> Vec<u8> {
    b.iter().map(u8::to_ascii_lowercase).collect()
}

/// The first index of `needle` in `haystack` (short needles, short haystacks).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = b"PK\x03\x04".to_vec();
        v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn tar_header() -> Vec<u8> {
        let mut v = vec![0u8; 512];
        v[..8].copy_from_slice(b"file.txt");
        v[257..263].copy_from_slice(b"ustar\0");
        v
    }

    fn pe() -> Vec<u8> {
        let mut v = vec![0u8; 0x200];
        v[..2].copy_from_slice(b"MZ");
        v[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        v[0x80..0x84].copy_from_slice(b"PE\0\0");
        v
    }

    #[test]
    fn detects_every_magic() {
        let cases: Vec<(Vec<u8>, FileType)> = vec![
            (
                b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec(),
                FileType::Pdf,
            ),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), FileType::Png),
            (b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec(), FileType::Jpeg),
            (b"GIF89a\x01\0\x01\0".to_vec(), FileType::Gif),
            (b"RIFF\x24\0\0\0WEBPVP8 ".to_vec(), FileType::Webp),
            (zip_entry("a.txt", b"hi"), FileType::Zip),
            (
                b"PK\x05\x06".iter().copied().chain([0; 18]).collect(),
                FileType::Zip,
            ),
            (
                [
                    zip_entry("[Content_Types].xml", b"<Types/>"),
                    zip_entry("word/document.xml", b"<w/>"),
                ]
                .concat(),
                FileType::Docx,
            ),
            (
                [
                    zip_entry("[Content_Types].xml", b"<Types/>"),
                    zip_entry("xl/workbook.xml", b"<x/>"),
                ]
                .concat(),
                FileType::Xlsx,
            ),
            (
                [
                    zip_entry("[Content_Types].xml", b"<T/>"),
                    zip_entry("ppt/presentation.xml", b""),
                ]
                .concat(),
                FileType::Pptx,
            ),
            (b"\x1f\x8b\x08\0\0\0\0\0".to_vec(), FileType::Gzip),
            (tar_header(), FileType::Tar),
            (b"\x7fELF\x02\x01\x01\0".to_vec(), FileType::Elf),
            (pe(), FileType::Pe),
            (b"MZ\x90\0\x03\0\0\0".to_vec(), FileType::Msdos),
            (b"\xcf\xfa\xed\xfe\x07\0\0\x01".to_vec(), FileType::MachO),
            (b"\xce\xfa\xed\xfe\x07\0\0\0".to_vec(), FileType::MachO),
            (b"\xfe\xed\xfa\xce\0\0\0\x12".to_vec(), FileType::MachO),
            (b"\xfe\xed\xfa\xcf\x01\0\0\x07".to_vec(), FileType::MachO),
            (b"\xca\xfe\xba\xbe\0\0\0\x02".to_vec(), FileType::MachO),
            (b"\xca\xfe\xba\xbf\0\0\0\x02".to_vec(), FileType::MachO),
            (b"\xca\xfe\xba\xbe\0\0\0\x34".to_vec(), FileType::JavaClass),
            (b"#!/bin/sh\necho hi\n".to_vec(), FileType::Script),
            (
                b"<!DOCTYPE html><html><body>hi</body></html>".to_vec(),
                FileType::Html,
            ),
            (b"\xef\xbb\xbf  <html lang=en>".to_vec(), FileType::Html),
            (
                b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
                FileType::Svg,
            ),
            (
                b"<svg><script>alert(1)</script></svg>".to_vec(),
                FileType::Svg,
            ),
            (b"\0\0\0\x20ftypisom\0\0\x02\0".to_vec(), FileType::Mp4),
            (b"\0\0\0\x14ftypqt  \0\0\0\0".to_vec(), FileType::Mov),
            (b"\0\0\0\x18ftypheic\0\0\0\0".to_vec(), FileType::Heic),
            (b"name,qty\nwidget,3\n".to_vec(), FileType::Text),
            (
                b"<?xml version=\"1.0\"?><note>hi</note>".to_vec(),
                FileType::Text,
            ),
            (vec![0u8, 1, 2, 3, 0xff, 0xfe, 7, 8], FileType::Unknown),
            (Vec::new(), FileType::Unknown),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                sniff(&bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(24)])
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for &t in ALL_TYPES {
            assert_eq!(FileType::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn text_tolerates_a_cut_multibyte_sequence_only_at_the_end() {
        assert!(looks_like_text("naïve café".as_bytes()));
        assert!(looks_like_text(&"café".as_bytes()[..4]));
        assert!(!looks_like_text(b"caf\xc3(more"));
        assert!(!looks_like_text(b"bin\0ary"));
    }

    #[test]
    fn declarations() {
        assert!(FileType::Docx.accepts_media_type("application/zip"));
        assert!(FileType::Docx.accepts_extension("zip"));
        assert!(FileType::Text.accepts_media_type("text/plain"));
        assert!(FileType::Text.accepts_media_type("text/x-custom-log"));
        assert!(!FileType::Text.accepts_media_type("text/html"));
        assert!(!FileType::Elf.accepts_extension("pdf"));
        assert!(is_known_extension("pdf") && !is_known_extension("weird"));
        assert!(!is_known_media_type("application/octet-stream"));
        assert!(!is_checkable_media_type("application/octet-stream"));
        assert!(is_checkable_media_type("text/plain") && is_checkable_media_type("image/bmp"));
        assert!(!FileType::Script.accepts_media_type("text/plain"));
    }
}

//! Checkpoints as C2SP signed notes: the tlog-checkpoint body, Ed25519
//! signature lines, verifier keys, and the checkpoints file that holds one
//! note after another. Owns those text formats; signs and verifies through
//! `crypto`, never holds key bytes itself.
//!
//! A checkpoint (c2sp.org/tlog-checkpoint inside c2sp.org/signed-note):
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, standard base64>\n
//! \n
//! — <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>\n
//! ```
//!
//! The signature covers the first three lines, final newline included. The
//! key hash is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public
//! key), and a verifier key is written `<name>+<key hash hex>+<base64(0x01
//! || public key)>`, as Go's `golang.org/x/mod/sumdb/note` reads it. The key
//! name is the log's origin.
//!
//! The checkpoints file is those notes in the order they were signed, each
//! followed by one empty line, so every entry ends in a blank line and a
//! crash mid-write leaves an entry without one.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::merkle::Hash;
use crate::crypto::{ed25519::SigningKey, ed25519_verify, sha256};

/// The Ed25519 signature type byte of signed-note key hashes and keys.
const ED25519: u8 = 0x01;

/// How a signature line starts: U+2014 EM DASH and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The most signature lines a note may carry (the limit Go's note applies).
const MAX_SIGNATURES: usize = 100;

/// The longest checkpoint entry. Ours are about 200 bytes; the limit leaves
/// room for cosignatures while bounding what a reader holds.
pub const MAX_NOTE_LEN: usize = 16 << 10;

/// Why a note or checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    #[error("checkpoint origin {found:?} is not {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("checkpoint carries no signature by key {key}")]
    NotSigned { key: String },
    #[error("checkpoint signature by key {key} does not verify")]
    BadSignature { key: String },
}

fn malformed(reason: impl Into<String>) -> NoteError {
    NoteError::Malformed(reason.into())
}

/// Whether `name` can name a signed-note key: non-empty UTF-8 without
/// Unicode spaces or `+`.
fn is_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The public half of the log's signing key, in signed-note form.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_hash: [u8; 4],
    public: [u8; 32],
}

/// A string that is not a verifier key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a signed-note verifier key (<name>+<8 hex digits>+<base64 key>): {0}")]
pub struct BadVerifierKey(&'static str);

impl VerifierKey {
    pub fn new(name: &str, public: [u8; 32]) -> Result<VerifierKey, BadVerifierKey> {
        if !is_key_name(name) {
            return Err(BadVerifierKey("the name is empty or has a space or '+'"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_hash: key_hash(name, &public),
            public,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// `<name>+<key hash hex>`: which key, in messages.
    pub fn id(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.key_hash))
    }
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 2 + public.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ED25519);
    input.extend_from_slice(public);
    let digest = sha256(&input);
    [digest[0], digest[1], digest[2], digest[3]]
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut typed = vec![ED25519];
        typed.extend_from_slice(&self.public);
        write!(f, "{}+{}", self.id(), BASE64.encode(typed))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = BadVerifierKey;

    fn from_str(text: &str) -> Result<VerifierKey, BadVerifierKey> {
        // Base64 has '+' in its alphabet: only the first two separate parts.
        let mut parts = text.trim_end_matches('\n').splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(BadVerifierKey("expected three parts separated by '+'"));
        };
        let mut claimed = [0u8; 4];
        if hash.len() != 8 || hex::decode_to_slice(hash, &mut claimed).is_err() {
            return Err(BadVerifierKey("the key hash is not 8 hex digits"));
        }
        let typed = BASE64
            .decode(key)
            .map_err(|_| BadVerifierKey("the key is not base64"))?;
        let Some((&ED25519, public)) = typed.split_first() else {
            return Err(BadVerifierKey("not an Ed25519 key"));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| BadVerifierKey("an Ed25519 key is 32 bytes"))?;
        let parsed = VerifierKey::new(name, public)?;
        if parsed.key_hash != claimed {
            return Err(BadVerifierKey(
                "the key hash does not match the name and key",
            ));
        }
        Ok(parsed)
    }
}

/// A signed tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    /// The whole signed note, as written.
    note: String,
}

impl Checkpoint {
    /// Signs the head (`size`, `root`) of the log `key` names.
    pub(super) fn sign(
        signer: &SigningKey,
        key: &VerifierKey,
        size: u64,
        root: Hash,
    ) -> Checkpoint {
        let body = format!("{}\n{size}\n{}\n", key.name, BASE64.encode(root));
        let mut signature = key.key_hash.to_vec();
        signature.extend_from_slice(&signer.sign(body.as_bytes()));
        let note = format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            key.name,
            BASE64.encode(signature)
        );
        Checkpoint {
            origin: key.name.clone(),
            size,
            root,
            note,
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many records it covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The signed note text.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Parses a signed checkpoint note without checking any signature.
    pub fn parse(note: &str) -> Result<Checkpoint, NoteError> {
        let (body, _) = split_note(note)?;
        let mut lines = body.split_terminator('\n');
        let origin = lines.next().unwrap_or_default();
        let size = lines.next().ok_or_else(|| malformed("no tree size line"))?;
        let root = lines.next().ok_or_else(|| malformed("no root hash line"))?;
        if origin.is_empty() {
            return Err(malformed("empty origin line"));
        }
        let canonical = size == "0" || (!size.starts_with('0') && size.len() <= 20);
        let size: u64 = size
            .parse()
            .ok()
            .filter(|_| canonical && size.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| malformed(format!("tree size {size:?} is not a decimal number")))?;
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .filter(|hash: &Hash| BASE64.encode(hash) == root)
            .ok_or_else(|| malformed("the root hash is not 32 bytes of base64"))?;
        // Extension lines may follow; they are signed but carry nothing we use.
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            note: note.to_owned(),
        })
    }

    /// Checks that `key` signed this checkpoint for the log `key` names.
    /// Signatures by other keys (cosigners) are ignored, as signed-note
    /// verifiers do; a line claiming `key` that does not verify fails.
    pub fn verify(&self, key: &VerifierKey) -> Result<(), NoteError> {
        if self.origin != key.name {
            return Err(NoteError::WrongOrigin {
                expected: key.name.clone(),
                found: self.origin.clone(),
            });
        }
        let (body, signatures) = split_note(&self.note)?;
        let ours = signatures
            .iter()
            .find(|s| s.name == key.name && s.key_hash == key.key_hash)
            .ok_or_else(|| NoteError::NotSigned { key: key.id() })?;
        if ed25519_verify(&key.public, body.as_bytes(), &ours.signature) {
            Ok(())
        } else {
            Err(NoteError::BadSignature { key: key.id() })
        }
    }

    /// Parses `note` and checks `key` signed it.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse(note)?;
        checkpoint.verify(key)?;
        Ok(checkpoint)
    }
}

struct SignatureLine<'a> {
    name: &'a str,
    key_hash: [u8; 4],
    signature: Vec<u8>,
}

/// Splits a signed note into its signed text (final newline included) and
/// its signature lines, checking the signed-note syntax.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let (body, signatures) = (&note[..=split], &note[split + 2..]);
    if body.split_terminator('\n').any(str::is_empty) {
        return Err(malformed("an empty line in the signed text"));
    }
    if body.chars().any(|c| c.is_control() && c != '\n') {
        return Err(malformed("a control character in the signed text"));
    }
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return Err(malformed(
            "no signature lines, or no newline after the last",
        ));
    }
    let mut lines = Vec::new();
    for line in signatures.split_terminator('\n') {
        if lines.len() == MAX_SIGNATURES {
            return Err(malformed(format!("more than {MAX_SIGNATURES} signatures")));
        }
        let (name, encoded) = line
            .strip_prefix(SIGNATURE_PREFIX)
            .and_then(|rest| rest.split_once(' '))
            .ok_or_else(|| malformed("a signature line is not '\u{2014} <name> <signature>'"))?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| malformed("a signature is not base64"))?;
        if !is_key_name(name) || bytes.len() < 5 {
            return Err(malformed(
                "a signature line has a bad key name or is too short",
            ));
        }
        lines.push(SignatureLine {
            name,
            key_hash: [bytes[0], bytes[1], bytes[2], bytes[3]],
            signature: bytes[4..].to_vec(),
        });
    }
    Ok((body, lines))
}

/// One step through a checkpoints file.
#[derive(Debug)]
pub(super) enum Entry {
    /// A complete entry: the note, and the byte offset just past its blank
    /// terminator line.
    Note { note: String, end: u64 },
    /// The file ended cleanly between entries.
    End,
    /// The file ends inside the entry starting at `start` (a crash mid-write,
    /// or a cut).
    Torn { start: u64 },
    /// The entry starting at `start` cannot be a checkpoint note.
    Malformed { start: u64, reason: String },
}

/// Reads a checkpoints file entry by entry, holding at most one entry.
pub(super) struct EntryReader<R> {
    reader: R,
    offset: u64,
    line: Vec<u8>,
}

impl<R: BufRead> EntryReader<R> {
    pub(super) fn new(reader: R) -> EntryReader<R> {
        EntryReader {
            reader,
            offset: 0,
            line: Vec::new(),
        }
    }

    pub(super) fn next_entry(&mut self) -> io::Result<Entry> {
        let start = self.offset;
        let mut note = Vec::new();
        let mut in_signatures = false;
        let mut signatures = 0;
        loop {
            self.line.clear();
            let limit = (MAX_NOTE_LEN + 1 - note.len()) as u64;
            let read = <&mut R as Read>::take(&mut self.reader, limit)
                .read_until(b'\n', &mut self.line)?;
            if read == 0 && note.is_empty() {
                return Ok(Entry::End);
            }
            if self.line.last() != Some(&b'\n') {
                if note.len() + self.line.len() > MAX_NOTE_LEN {
                    let reason = format!("longer than {MAX_NOTE_LEN} bytes");
                    return Ok(Entry::Malformed { start, reason });
                }
                return Ok(Entry::Torn { start });
            }
            self.offset += read as u64;
            let blank = self.line == b"\n";
            match (in_signatures, blank) {
                (false, true) if note.is_empty() => {
                    let reason = "an empty line where a checkpoint should start".into();
                    return Ok(Entry::Malformed { start, reason });
                }
                (false, true) => in_signatures = true,
                (true, true) if signatures == 0 => {
                    let reason = "no signature lines".into();
                    return Ok(Entry::Malformed { start, reason });
                }
                (true, true) => {
                    return match String::from_utf8(note) {
                        Ok(note) => Ok(Entry::Note {
                            note,
                            end: self.offset,
                        }),
                        Err(_) => Ok(Entry::Malformed {
                            start,
                            reason: "not UTF-8".into(),
                        }),
                    };
                }
                (true, false) => signatures += 1,
                (false, false) => {}
            }
            note.extend_from_slice(&self.line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the documentation of Go's golang.org/x/mod/sumdb/note.
    const GO_KEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const GO_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo \
        Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    fn test_key() -> (SigningKey, VerifierKey) {
        let signer = SigningKey::from_seed(&[42; 32]);
        let key = VerifierKey::new("strongroom.test/audit", signer.public_key()).unwrap();
        (signer, key)
    }

    #[test]
    fn verifier_keys_and_signatures_agree_with_go_note() {
        let key: VerifierKey = GO_KEY.parse().unwrap();
        assert_eq!(key.name(), "example.com/foo");
        assert_eq!(key.to_string(), GO_KEY);
        assert_eq!(key.id(), "example.com/foo+530d903a");
        // Recomputing the key hash from the name and key gives Go's.
        assert_eq!(
            VerifierKey::new("example.com/foo", *key.public_key()).unwrap(),
            key
        );

        let (body, signatures) = split_note(GO_NOTE).unwrap();
        assert_eq!(body, "This is an example message.\n");
        assert_eq!(signatures.len(), 1);
        assert_eq!(signatures[0].key_hash, key.key_hash);
        assert!(ed25519_verify(
            key.public_key(),
            body.as_bytes(),
            &signatures[0].signature
        ));
        let edited = GO_NOTE.replace("example message", "example massage");
        let (body, signatures) = split_note(&edited).unwrap();
        assert!(!ed25519_verify(
            key.public_key(),
            body.as_bytes(),
            &signatures[0].signature
        ));
    }

    #[test]
    fn verifier_keys_are_checked_when_parsed() {
        let mut wrong_hash = GO_KEY.to_owned();
        wrong_hash.replace_range(16..18, "00");
        for bad in [
            "",
            "example.com/foo",
            "example.com/foo+530d903a",
            &wrong_hash,
            "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
            "example.com/foo+530d903a+AkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=",
            "example com+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            &format!("{GO_KEY}+extra"),
        ] {
            assert!(bad.parse::<VerifierKey>().is_err(), "accepted {bad:?}");
        }
        // A trailing newline, as in a key file, is fine.
        assert!(format!("{GO_KEY}\n").parse::<VerifierKey>().is_ok());
    }

    #[test]
    fn a_key_whose_base64_has_a_plus_round_trips() {
        let key = (0..=255u8)
            .map(|seed| SigningKey::from_seed(&[seed; 32]).public_key())
            .map(|public| VerifierKey::new("strongroom.test/audit", public).unwrap())
            .find(|key| key.to_string().matches('+').count() > 2)
            .expect("some key's base64 has a '+'");
        assert_eq!(key.to_string().parse::<VerifierKey>(), Ok(key));
    }

    #[test]
    fn a_checkpoint_is_tlog_checkpoint_text_and_round_trips() {
        let (signer, key) = test_key();
        let root = sha256(b"root");
        let checkpoint = Checkpoint::sign(&signer, &key, 1234, root);
        let note = checkpoint.note();
        let (body, rest) = note.split_once("\n\n").unwrap();
        assert_eq!(
            body,
            format!("strongroom.test/audit\n1234\n{}", BASE64.encode(root))
        );
        let line = rest.strip_suffix('\n').unwrap();
        let encoded = line
            .strip_prefix("\u{2014} strongroom.test/audit ")
            .unwrap();
        let bytes = BASE64.decode(encoded).unwrap();
        assert_eq!(bytes.len(), 4 + 64);
        assert_eq!(bytes[..4], key.key_hash);

        let opened = Checkpoint::open(note, &key).unwrap();
        assert_eq!(opened, checkpoint);
        assert_eq!((opened.size(), *opened.root()), (1234, root));
        assert_eq!(opened.origin(), "strongroom.test/audit");
    }

    #[test]
    fn edited_forged_or_foreign_checkpoints_are_refused() {
        let (signer, key) = test_key();
        let root = sha256(b"root");
        let note = Checkpoint::sign(&signer, &key, 1234, root)
            .note()
            .to_owned();

        let grown = note.replace("\n1234\n", "\n1235\n");
        assert_eq!(
            Checkpoint::open(&grown, &key),
            Err(NoteError::BadSignature { key: key.id() })
        );
        let other_root = note.replace(&BASE64.encode(root), &BASE64.encode(sha256(b"other")));
        assert!(matches!(
            Checkpoint::open(&other_root, &key),
            Err(NoteError::BadSignature { .. })
        ));

        // Signed by another key under the same name: not our key hash.
        let mallory = SigningKey::from_seed(&[7; 32]);
        let mallory_key = VerifierKey::new(key.name(), mallory.public_key()).unwrap();
        let forged = Checkpoint::sign(&mallory, &mallory_key, 1234, root);
        assert_eq!(
            Checkpoint::open(forged.note(), &key),
            Err(NoteError::NotSigned { key: key.id() })
        );

        // Our key hash with someone else's signature bytes.
        let (_, ours) = note.split_once("\n\n").unwrap();
        let (_, theirs) = forged.note().split_once("\n\n").unwrap();
        let mut ours_bytes = BASE64
            .decode(ours.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        let theirs_bytes = BASE64
            .decode(theirs.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        ours_bytes[4..].copy_from_slice(&theirs_bytes[4..]);
        let spliced = note.replace(
            ours.trim_end().rsplit(' ').next().unwrap(),
            &BASE64.encode(&ours_bytes),
        );
        assert!(matches!(
            Checkpoint::open(&spliced, &key),
            Err(NoteError::BadSignature { .. })
        ));

        // The right key for another log.
        let other_log = VerifierKey::new("other.test/log", signer.public_key()).unwrap();
        assert!(matches!(
            Checkpoint::open(&note, &other_log),
            Err(NoteError::WrongOrigin { .. })
        ));

        // A cosignature by an unknown key next to ours is fine.
        let cosigned = format!("{note}\u{2014} witness.test {}\n", BASE64.encode([9u8; 68]));
        assert!(Checkpoint::open(&cosigned, &key).is_ok());
    }

    #[test]
    fn malformed_checkpoints_are_refused_with_a_reason() {
        let (signer, key) = test_key();
        let root64 = BASE64.encode(sha256(b"root"));
        let sig = Checkpoint::sign(&signer, &key, 1, sha256(b"root"));
        let sig_line = sig.note().split_once("\n\n").unwrap().1;
        for body in [
            format!("strongroom.test/audit\n01\n{root64}\n"),
            format!("strongroom.test/audit\n-1\n{root64}\n"),
            format!("strongroom.test/audit\n+1\n{root64}\n"),
            format!("strongroom.test/audit\n18446744073709551616\n{root64}\n"),
            format!("strongroom.test/audit\n1\n{}\n", &root64[1..]),
            format!(
                "strongroom.test/audit\n1\n{}\n",
                hex::encode(sha256(b"root"))
            ),
            "strongroom.test/audit\n1\n".to_owned(),
            format!("\n1\n{root64}\n"),
            format!("strongroom.test/audit\n1\n{root64}\n\nextension\n"),
            format!("strongroom.test/audit\n1\t\n{root64}\n"),
        ] {
            let note = format!("{body}\n{sig_line}");
            assert!(
                matches!(Checkpoint::parse(&note), Err(NoteError::Malformed(_))),
                "accepted {note:?}"
            );
        }
        let body = format!("strongroom.test/audit\n1\n{root64}\n");
        for signatures in [
            "".to_owned(),
            "\u{2014} strongroom.test/audit\n".to_owned(),
            "-- strongroom.test/audit AAAAAAAA\n".to_owned(),
            "\u{2014} strongroom.test/audit !!!!\n".to_owned(),
            "\u{2014} strongroom.test/audit AAAA\n".to_owned(),
            sig_line.trim_end().to_owned(),
        ] {
            let note = format!("{body}\n{signatures}");
            assert!(
                matches!(Checkpoint::parse(&note), Err(NoteError::Malformed(_))),
                "accepted {note:?}"
            );
        }
        // Extension lines are allowed (and signed).
        let with_extension = format!("{body}extension\n\n{sig_line}");
        assert!(Checkpoint::parse(&with_extension).is_ok());
    }

    #[test]
    fn the_entry_reader_finds_complete_torn_and_malformed_entries() {
        let (signer, key) = test_key();
        let first = Checkpoint::sign(&signer, &key, 1, sha256(b"1"));
        let second = Checkpoint::sign(&signer, &key, 2, sha256(b"2"));
        let file = format!("{}\n{}\n", first.note(), second.note());

        let mut reader = EntryReader::new(file.as_bytes());
        let Entry::Note { note, end } = reader.next_entry().unwrap() else {
            panic!("first entry");
        };
        assert_eq!(
            (note.as_str(), end),
            (first.note(), first.note().len() as u64 + 1)
        );
        assert!(
            matches!(reader.next_entry().unwrap(), Entry::Note { note, .. } if note == second.note())
        );
        assert!(matches!(reader.next_entry().unwrap(), Entry::End));

        // Every cut inside the second entry is a torn entry at its start.
        let second_start = first.note().len() + 1;
        for cut in second_start + 1..file.len() {
            if !file.is_char_boundary(cut) {
                continue;
            }
            let mut reader = EntryReader::new(&file.as_bytes()[..cut]);
            assert!(matches!(reader.next_entry().unwrap(), Entry::Note { .. }));
            match reader.next_entry().unwrap() {
                Entry::Torn { start } => assert_eq!(start, second_start as u64, "cut at {cut}"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }

        let extra_blank = format!("{}\n\n{}\n", first.note(), second.note());
        let mut reader = EntryReader::new(extra_blank.as_bytes());
        assert!(matches!(reader.next_entry().unwrap(), Entry::Note { .. }));
        assert!(matches!(
            reader.next_entry().unwrap(),
            Entry::Malformed { start, .. } if start == second_start as u64
        ));

        let unsigned = "strongroom.test/audit\n1\nAAAA\n\n\n";
        assert!(matches!(
            EntryReader::new(unsigned.as_bytes()).next_entry().unwrap(),
            Entry::Malformed { start: 0, .. }
        ));
        let huge = "x".repeat(MAX_NOTE_LEN + 10);
        assert!(matches!(
            EntryReader::new(huge.as_bytes()).next_entry().unwrap(),
            Entry::Malformed { start: 0, .. }
        ));
    }
}

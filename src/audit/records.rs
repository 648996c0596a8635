//! Reading the records file back: framing, the index sequence and the `prev`
//! chain, one record at a time. Shared by recovery at open and by offline
//! verification, which differ only in what they do with a fault.

use std::fmt;
use std::io::{self, BufRead, Read};

use super::event::{self, MAX_RECORD_LEN};
use super::merkle::{Hash, leaf_hash};

/// One step through the records file.
#[derive(Debug)]
pub(super) enum Step {
    /// A record that checked out, as its leaf hash.
    Record(Hash),
    /// The file ended cleanly after a record (or was empty).
    End,
    Fault(Fault),
}

/// The first thing wrong in a records file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fault {
    /// The first record index that cannot be trusted.
    pub index: u64,
    /// Where the bad record starts in the file.
    pub offset: u64,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FaultKind {
    /// The file ends inside a record: a crash mid-append, or a cut.
    Torn,
    /// The line is not a record.
    Malformed(String),
    /// The record at this position says it is another one.
    WrongIndex { found: u64 },
    /// Record `index + 1` names a different hash for record `index`.
    BrokenChain,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.index;
        match &self.kind {
            FaultKind::Torn => write!(f, "record {index} is incomplete: the file ends inside it"),
            FaultKind::Malformed(reason) => write!(f, "record {index} is malformed: {reason}"),
            FaultKind::WrongIndex { found } => write!(
                f,
                "the record at position {index} says it is record {found}: \
                 records are missing, duplicated or out of order"
            ),
            FaultKind::BrokenChain => write!(
                f,
                "record {index} does not hash to the prev that record {} names: \
                 one of them was altered",
                index + 1
            ),
        }
    }
}

/// Reads records in order, checking each one's framing, canonical form,
/// index and `prev` link.
pub(super) struct RecordReader<R> {
    reader: R,
    next: u64,
    offset: u64,
    /// Where the previous record starts, to report a broken link there.
    previous_offset: u64,
    previous_leaf: Option<Hash>,
    line: Vec<u8>,
    failed: bool,
}

impl<R: BufRead> RecordReader<R> {
    pub(super) fn new(reader: R) -> RecordReader<R> {
        RecordReader {
            reader,
            next: 0,
            offset: 0,
            previous_offset: 0,
            previous_leaf: None,
            line: Vec::with_capacity(1024),
            failed: false,
        }
    }

    pub(super) fn next_step(&mut self) -> io::Result<Step> {
        assert!(!self.failed, "read past a fault");
        self.line.clear();
        let limit = MAX_RECORD_LEN as u64 + 1;
        let read =
            <&mut R as Read>::take(&mut self.reader, limit).read_until(b'\n', &mut self.line)?;
        if read == 0 {
            return Ok(Step::End);
        }
        let index = self.next;
        let start = self.offset;
        let fault = |kind| {
            Ok(Step::Fault(Fault {
                index,
                offset: start,
                kind,
            }))
        };
        if self.line.pop() != Some(b'\n') {
            self.failed = true;
            if read as u64 == limit {
                let reason = format!("longer than {MAX_RECORD_LEN} bytes");
                return fault(FaultKind::Malformed(reason));
            }
            return fault(FaultKind::Torn);
        }
        let decoded = match event::decode(&self.line) {
            Ok(decoded) => decoded,
            Err(reason) => {
                self.failed = true;
                return fault(FaultKind::Malformed(reason));
            }
        };
        if decoded.record.index != index {
            self.failed = true;
            let found = decoded.record.index;
            return fault(FaultKind::WrongIndex { found });
        }
        if decoded.prev != self.previous_leaf {
            self.failed = true;
            return match (index, decoded.prev) {
                (0, Some(_)) => fault(FaultKind::Malformed("record 0 names a prev".into())),
                (_, None) => fault(FaultKind::Malformed("no prev hash".into())),
                _ => Ok(Step::Fault(Fault {
                    index: index - 1,
                    offset: self.previous_offset,
                    kind: FaultKind::BrokenChain,
                })),
            };
        }
        let leaf = leaf_hash(&self.line);
        self.previous_leaf = Some(leaf);
        self.previous_offset = start;
        self.offset += read as u64;
        self.next += 1;
        Ok(Step::Record(leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{Event, EventKind, Outcome, encode};

    /// A records file of `n` records, and where each starts.
    fn log(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut file = Vec::new();
        let mut starts = Vec::new();
        let mut prev = None;
        for i in 0..n {
            starts.push(file.len());
            let event = Event::new(EventKind::Create, Outcome::Ok).tenant(format!("t{i}"));
            let line = encode(i, prev.as_ref(), 1_750_000_000_000 + i, &event);
            prev = Some(leaf_hash(&line));
            file.extend_from_slice(&line);
            file.push(b'\n');
        }
        (file, starts)
    }

    fn first_fault(file: &[u8]) -> (u64, Option<Fault>) {
        let mut reader = RecordReader::new(file);
        let mut count = 0;
        loop {
            match reader.next_step().unwrap() {
                Step::Record(_) => count += 1,
                Step::End => return (count, None),
                Step::Fault(fault) => return (count, Some(fault)),
            }
        }
    }

    #[test]
    fn a_clean_log_reads_to_the_end() {
        let (file, _) = log(10);
        assert_eq!(first_fault(&file), (10, None));
        assert_eq!(first_fault(b""), (0, None));
    }

    #[test]
    fn every_cut_is_a_torn_record_at_the_cut() {
        let (file, starts) = log(4);
        for cut in 1..file.len() {
            let (count, fault) = first_fault(&file[..cut]);
            let whole = starts.iter().filter(|&&s| s <= cut).count() as u64 - 1;
            if starts.contains(&cut) {
                assert_eq!((count, fault), (whole, None), "cut {cut}");
                continue;
            }
            let fault = fault.expect("a fault");
            assert_eq!(fault.kind, FaultKind::Torn, "cut {cut}");
            assert_eq!(fault.index, whole);
            assert_eq!(fault.offset, starts[whole as usize] as u64);
        }
    }

    #[test]
    fn drops_swaps_and_edits_name_the_first_bad_index() {
        let (file, starts) = log(6);
        let record = |i: usize| &file[starts[i]..starts.get(i + 1).copied().unwrap_or(file.len())];

        let dropped: Vec<u8> = (0..6)
            .filter(|&i| i != 3)
            .flat_map(|i| record(i).to_vec())
            .collect();
        let fault = first_fault(&dropped).1.unwrap();
        assert_eq!(
            (fault.index, fault.kind),
            (3, FaultKind::WrongIndex { found: 4 })
        );

        let swapped: Vec<u8> = [0, 1, 3, 2, 4, 5]
            .iter()
            .flat_map(|&i| record(i).to_vec())
            .collect();
        let fault = first_fault(&swapped).1.unwrap();
        assert_eq!(
            (fault.index, fault.kind),
            (2, FaultKind::WrongIndex { found: 3 })
        );

        // t2 -> t9 keeps the record valid; record 3's prev no longer matches.
        let mut edited = file.clone();
        let at = starts[2] + record(2).windows(5).position(|w| w == b"\"t2\"}").unwrap();
        edited[at + 2] = b'9';
        let fault = first_fault(&edited).1.unwrap();
        assert_eq!(
            (fault.index, fault.kind.clone()),
            (2, FaultKind::BrokenChain)
        );
        assert_eq!(fault.offset, starts[2] as u64);
        assert!(
            fault.to_string().contains("record 2 does not hash"),
            "{fault}"
        );

        let mut broken = file.clone();
        broken[starts[4]] = b'[';
        let fault = first_fault(&broken).1.unwrap();
        assert_eq!(fault.index, 4);
        assert!(matches!(fault.kind, FaultKind::Malformed(_)));

        let mut blank = file.clone();
        blank.splice(starts[1]..starts[1], *b"\n");
        assert_eq!(first_fault(&blank).1.unwrap().index, 1);

        let long = vec![b'x'; MAX_RECORD_LEN + 5];
        let fault = first_fault(&long).1.unwrap();
        assert!(matches!(fault.kind, FaultKind::Malformed(_)), "{fault:?}");
    }
}

//! The audit trail end to end: a log written through the library into a
//! temporary data dir, exported and verified by the real binary, then
//! tampered with in each way an auditor must catch. Also the append
//! throughput figures (printed with --nocapture, never asserted).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use strongroom::audit::{self, Audit, Event, EventKind, Outcome, VerifierKey};
use strongroom::crypto::ed25519::SigningKey;
use strongroom::id::UploadId;

const ORIGIN: &str = "strongroom.test/audit";

/// Records in the test log, and a checkpoint after every `EVERY` of them:
/// checkpoints 0 to 5 cover 50, 100, ... 300 records.
const RECORDS: u64 = 300;
const EVERY: u64 = 50;

/// Far above any command here (milliseconds); a command still running then
/// is killed and the test fails instead of hanging.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// The kinds a real appliance logs, cycled through.
const KINDS: [EventKind; 8] = [
    EventKind::Create,
    EventKind::Resume,
    EventKind::Commit,
    EventKind::Verdict,
    EventKind::Download,
    EventKind::AuthFailure,
    EventKind::Delete,
    EventKind::TokenIssue,
];

fn event(audit: &Audit, i: u64) -> Event {
    let kind = KINDS[i as usize % KINDS.len()];
    let outcome = if kind == EventKind::AuthFailure {
        Outcome::Denied
    } else {
        Outcome::Ok
    };
    let mut event = Event::new(kind, outcome)
        .actor(format!("token:{}", i % 7))
        .tenant("acme")
        .request_id(format!("req-{i}"))
        .upload(UploadId::from_bytes([(i % 251) as u8; 16]))
        .size(1 << 20)
        .offset(i * 4096);
    if kind == EventKind::Commit {
        event = event
            .sha256(strongroom::crypto::sha256(&i.to_be_bytes()))
            .name(audit.keyed_name(&format!("invoice {i}.pdf")));
    }
    event
}

/// A data dir holding the test log, and its exported copy.
struct Log {
    root: tempfile::TempDir,
}

impl Log {
    /// Writes the log through the library, then exports it with the binary.
    fn build() -> Log {
        let root = tempfile::tempdir().expect("temp dir");
        let audit = Audit::open(&audit::dir(&root.path().join("data")), ORIGIN).unwrap();
        for i in 0..RECORDS {
            assert_eq!(audit.append(event(&audit, i)).unwrap(), i);
            if (i + 1) % EVERY == 0 {
                assert_eq!(audit.checkpoint().unwrap().size(), i + 1);
            }
        }
        drop(audit);
        let log = Log { root };
        strongroom([
            "audit".as_ref(),
            "export".as_ref(),
            "--data-dir".as_ref(),
            log.data().as_os_str(),
            "--out".as_ref(),
            log.export().as_os_str(),
        ])
        .assert_code(0)
        .assert_stdout("exported 300 records and 6 checkpoints");
        log
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn export(&self) -> PathBuf {
        self.root.path().join("export")
    }

    /// The key as the auditor got it: the appliance's audit.pub.
    fn key(&self) -> PathBuf {
        audit::dir(&self.data()).join(audit::PUBLIC_KEY_FILE)
    }

    fn verify(&self) -> Ran {
        strongroom([
            "audit".as_ref(),
            "verify".as_ref(),
            self.export().as_os_str(),
            "--key".as_ref(),
            self.key().as_os_str(),
        ])
    }

    fn records_path(&self) -> PathBuf {
        self.export().join(audit::RECORDS_FILE)
    }

    /// The exported records, one line (newline included) each.
    fn records(&self) -> Vec<Vec<u8>> {
        std::fs::read(self.records_path())
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn write_records(&self, records: &[Vec<u8>]) {
        std::fs::write(self.records_path(), records.concat()).unwrap();
    }

    fn checkpoints_path(&self) -> PathBuf {
        self.export().join(audit::CHECKPOINTS_FILE)
    }

    /// The exported checkpoint notes, without their blank separator lines.
    fn checkpoints(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.checkpoints_path()).unwrap();
        let mut notes = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let body_end = rest.find("\n\n").unwrap() + 2;
            let note_end = body_end + rest[body_end..].find("\n\n").unwrap() + 1;
            notes.push(rest[..note_end].to_owned());
            rest = &rest[note_end + 1..];
        }
        notes
    }

    fn write_checkpoints(&self, notes: &[String]) {
        let text: String = notes.iter().map(|note| format!("{note}\n")).collect();
        std::fs::write(self.checkpoints_path(), text).unwrap();
    }
}

/// A finished `strongroom` process.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    #[track_caller]
    fn assert_code(&self, code: i32) -> &Ran {
        assert_eq!(
            self.code,
            Some(code),
            "exit status\n--- stdout\n{}--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    fn assert_stdout(&self, needle: &str) -> &Ran {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    fn assert_stderr(&self, needle: &str) -> &Ran {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stdout\n{}--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Exit 2, naming `index` as the first failing one.
    #[track_caller]
    fn assert_tampered_at(&self, index: u64) -> &Ran {
        self.assert_code(2)
            .assert_stdout("TAMPERED")
            .assert_stdout(&format!("first failing index {index}:"))
    }
}

fn strongroom<I, S>(args: I) -> Ran
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    // The output is a few lines, far below a pipe's buffer, so it can wait
    // in the pipes until the process exits.
    let mut child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strongroom starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            panic!("strongroom ran past {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("output");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

#[test]
fn an_export_verifies_with_the_key_as_a_file_or_as_text() {
    let log = Log::build();
    log.verify()
        .assert_code(0)
        .assert_stdout("ok: 300 records, 6 checkpoints signed by strongroom.test/audit+");
    let mut names: Vec<String> = std::fs::read_dir(log.export())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["audit.pub", "checkpoints", "records"]);

    let key_text = std::fs::read_to_string(log.key()).unwrap();
    strongroom([
        "audit",
        "verify",
        log.export().to_str().unwrap(),
        "--key",
        key_text.trim_end(),
    ])
    .assert_code(0)
    .assert_stdout("ok: 300 records");

    // Filenames are keyed, never written out.
    let records = std::fs::read_to_string(log.records_path()).unwrap();
    assert!(!records.contains("invoice"), "a raw filename in the log");
    let commits = (0..RECORDS)
        .filter(|&i| KINDS[i as usize % KINDS.len()] == EventKind::Commit)
        .count();
    assert_eq!(records.matches("\"name\":\"").count(), commits);
}

#[test]
fn a_flipped_byte_in_a_record_is_caught_at_that_record() {
    let log = Log::build();
    // Inside a value: req-137 becomes req-127, still a valid record.
    let mut records = log.records();
    let at = find(&records[137], b"req-137") + 5;
    records[137][at] ^= 0x01;
    log.write_records(&records);
    log.verify()
        .assert_tampered_at(137)
        .assert_stdout("record 137 does not hash to the prev that record 138 names");

    // In the syntax: the record no longer parses.
    let log = Log::build();
    let mut records = log.records();
    records[42][0] ^= 0x01;
    log.write_records(&records);
    log.verify()
        .assert_tampered_at(42)
        .assert_stdout("record 42 is malformed");
}

#[test]
fn a_dropped_record_is_caught_at_its_index() {
    let log = Log::build();
    let mut records = log.records();
    records.remove(100);
    log.write_records(&records);
    log.verify()
        .assert_tampered_at(100)
        .assert_stdout("says it is record 101");
}

#[test]
fn two_swapped_records_are_caught_at_the_first() {
    let log = Log::build();
    let mut records = log.records();
    records.swap(200, 201);
    log.write_records(&records);
    log.verify()
        .assert_tampered_at(200)
        .assert_stdout("says it is record 201");
}

#[test]
fn a_truncated_file_is_caught_where_it_ends() {
    // Inside record 250.
    let log = Log::build();
    let mut records = log.records();
    records.truncate(251);
    records[250].truncate(30);
    log.write_records(&records);
    log.verify()
        .assert_tampered_at(250)
        .assert_stdout("record 250 is incomplete");

    // Between records: the last 20 are gone.
    let log = Log::build();
    let mut records = log.records();
    records.truncate(280);
    log.write_records(&records);
    log.verify()
        .assert_tampered_at(280)
        .assert_stdout("covers 300 records but the log holds only 280");
}

#[test]
fn a_history_rewritten_with_a_consistent_chain_is_caught_by_the_signatures() {
    // Record 137 edited and every later prev recomputed, as a careful
    // attacker without the signing key would: only the checkpoint covering
    // it (checkpoint 2, size 150) can tell, so the failure is the range it
    // signs, starting after checkpoint 1 (size 100).
    let log = Log::build();
    let mut records = log.records();
    let text = String::from_utf8(records[137].clone()).unwrap();
    records[137] = text.replace("req-137", "req-999").into_bytes();
    for i in 138..records.len() {
        let prev = audit::leaf_hash(records[i - 1].strip_suffix(b"\n").unwrap());
        let text = String::from_utf8(records[i].clone()).unwrap();
        let start = text.find("\"prev\":\"").unwrap() + 8;
        let mut fixed = text.clone();
        fixed.replace_range(start..start + 64, &hex::encode(prev));
        records[i] = fixed.into_bytes();
    }
    log.write_records(&records);
    log.verify()
        .assert_tampered_at(100)
        .assert_stdout("records 100 to 149 do not hash to the root signed in checkpoint 2");
}

#[test]
fn an_edited_checkpoint_root_is_caught() {
    let log = Log::build();
    let mut notes = log.checkpoints();
    let lines: Vec<&str> = notes[2].lines().collect();
    assert_eq!(lines[1], "150");
    let forged_root = BASE64.encode(strongroom::crypto::sha256(b"another history"));
    notes[2] = notes[2].replace(lines[2], &forged_root);
    log.write_checkpoints(&notes);
    log.verify()
        .assert_tampered_at(100)
        .assert_stdout("checkpoint 2 (tree size 150): checkpoint signature by key");
}

#[test]
fn a_forged_checkpoint_signature_is_caught() {
    // Our key hash, signature bytes altered.
    let log = Log::build();
    let mut notes = log.checkpoints();
    let encoded = notes[3].trim_end().rsplit(' ').next().unwrap().to_owned();
    let mut bytes = BASE64.decode(&encoded).unwrap();
    bytes[10] ^= 0x01;
    notes[3] = notes[3].replace(&encoded, &BASE64.encode(&bytes));
    log.write_checkpoints(&notes);
    log.verify()
        .assert_tampered_at(150)
        .assert_stdout("checkpoint 3 (tree size 200): checkpoint signature by key")
        .assert_stdout("does not verify");

    // A well-formed signature by another key under the log's name.
    let log = Log::build();
    let mallory = SigningKey::create(&log.root.path().join("mallory.key")).unwrap();
    let mallory_key = VerifierKey::new(ORIGIN, mallory.public_key()).unwrap();
    let mallory_hash = hex::decode(&mallory_key.id()[ORIGIN.len() + 1..]).unwrap();
    let mut notes = log.checkpoints();
    let body = notes[3].split_once("\n\n").unwrap().0.to_owned() + "\n";
    let mut signature = mallory_hash;
    signature.extend_from_slice(&mallory.sign(body.as_bytes()));
    notes[3] = format!("{body}\n\u{2014} {ORIGIN} {}\n", BASE64.encode(signature));
    log.write_checkpoints(&notes);
    log.verify()
        .assert_tampered_at(150)
        .assert_stdout("checkpoint 3 (tree size 200): checkpoint carries no signature by key");
}

#[test]
fn removed_or_reordered_checkpoints_are_caught() {
    // Without the latest checkpoint, its 50 records are signed by nobody.
    let log = Log::build();
    let mut notes = log.checkpoints();
    notes.pop();
    log.write_checkpoints(&notes);
    log.verify()
        .assert_tampered_at(250)
        .assert_stdout("records 250 to 299 are not covered by any checkpoint");

    let log = Log::build();
    let mut notes = log.checkpoints();
    notes.swap(3, 4);
    log.write_checkpoints(&notes);
    log.verify()
        .assert_tampered_at(200)
        .assert_stdout("checkpoint 4 has tree size 200, smaller than checkpoint 3's 250");
}

#[test]
fn an_unsigned_record_added_at_the_end_is_caught() {
    let log = Log::build();
    let mut records = log.records();
    let last = records.last().unwrap().clone();
    let text = String::from_utf8(last.clone()).unwrap();
    let prev = hex::encode(audit::leaf_hash(last.strip_suffix(b"\n").unwrap()));
    let start = text.find("\"prev\":\"").unwrap() + 8;
    let mut added = text.replacen("\"i\":299", "\"i\":300", 1);
    added.replace_range(start..start + 64, &prev);
    records.push(added.into_bytes());
    log.write_records(&records);
    log.verify()
        .assert_tampered_at(300)
        .assert_stdout("records 300 to 300 are not covered by any checkpoint");
}

#[test]
fn the_wrong_key_is_tampering_and_a_bad_argument_is_an_error() {
    let log = Log::build();
    let stranger = tempfile::tempdir().unwrap();
    let other = Audit::open(stranger.path(), ORIGIN).unwrap();
    let other_key = other.verifier_key().to_string();
    drop(other);
    strongroom([
        "audit",
        "verify",
        log.export().to_str().unwrap(),
        "--key",
        &other_key,
    ])
    .assert_tampered_at(0)
    .assert_stdout("checkpoint 0 (tree size 50): checkpoint carries no signature by key");

    strongroom([
        "audit",
        "verify",
        log.export().to_str().unwrap(),
        "--key",
        "not-a-key",
    ])
    .assert_code(1)
    .assert_stderr("--key not-a-key: neither a verifier key nor a readable file");

    let missing = log.root.path().join("nowhere");
    strongroom([
        "audit".as_ref(),
        "verify".as_ref(),
        missing.as_os_str(),
        "--key".as_ref(),
        log.key().as_os_str(),
    ])
    .assert_code(1)
    .assert_stderr("verifying the audit log in");

    // Exporting into a directory that already holds an export is refused.
    strongroom([
        "audit".as_ref(),
        "export".as_ref(),
        "--data-dir".as_ref(),
        log.data().as_os_str(),
        "--out".as_ref(),
        log.export().as_os_str(),
    ])
    .assert_code(1)
    .assert_stderr("exporting the audit log");
}

#[test]
fn export_leaves_out_records_no_checkpoint_signs_yet() {
    let log = Log::build();
    let audit = Audit::open(&audit::dir(&log.data()), ORIGIN).unwrap();
    for i in RECORDS..RECORDS + 7 {
        audit.append(event(&audit, i)).unwrap();
    }
    // The appliance is still running (the log is open): export only reads.
    let out = log.root.path().join("second");
    strongroom([
        "audit".as_ref(),
        "export".as_ref(),
        "--data-dir".as_ref(),
        log.data().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .assert_code(0)
    .assert_stdout("exported 300 records and 6 checkpoints")
    .assert_stdout("left out 7 newer records");
    audit.checkpoint().unwrap();
    drop(audit);
    std::fs::remove_dir_all(&out).unwrap();
    strongroom([
        "audit".as_ref(),
        "export".as_ref(),
        "--data-dir".as_ref(),
        log.data().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .assert_code(0)
    .assert_stdout("exported 307 records and 7 checkpoints");
}

/// Appends per second with one fsync each (one thread) and with group
/// commit (32 appenders at once, as threads and as tokio tasks). Figures
/// only: run with `--nocapture` to see them.
#[test]
fn append_throughput_figures() {
    const SEQUENTIAL: u64 = 300;
    const APPENDERS: u64 = 32;
    const EACH: u64 = 50;

    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(Audit::open(dir.path(), ORIGIN).unwrap());
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        audit.append(event(&audit, i)).unwrap();
    }
    let sequential = started.elapsed();
    let after_sequential = audit.stats();
    assert_eq!(after_sequential.records, SEQUENTIAL);
    assert_eq!(
        after_sequential.syncs, SEQUENTIAL,
        "one sync per lone append"
    );

    let started = Instant::now();
    let threads: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let audit = Arc::clone(&audit);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    audit.append(event(&audit, 1000 * (t + 1) + i)).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let grouped = started.elapsed();
    let after_threads = audit.stats();
    let thread_syncs = after_threads.syncs - after_sequential.syncs;
    assert_eq!(after_threads.records, SEQUENTIAL + APPENDERS * EACH);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let audit = Arc::clone(&audit);
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let event = event(&audit, 100_000 * (t + 1) + i);
                        audit.append_async(event).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let tasks = started.elapsed();
    let after_tasks = audit.stats();
    let task_syncs = after_tasks.syncs - after_threads.syncs;
    assert_eq!(after_tasks.records, SEQUENTIAL + 2 * APPENDERS * EACH);
    let head = audit.tree_head();
    drop(audit);
    // Whatever the interleaving, the file is in order and chained.
    assert_eq!(Audit::open(dir.path(), ORIGIN).unwrap().tree_head(), head);

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let n = APPENDERS * EACH;
    println!(
        "audit append throughput ({} on this disk):",
        dir.path().display()
    );
    println!(
        "  1 appender, fsync each:        {SEQUENTIAL} appends in {sequential:.2?} = {:>7.0}/s, \
         {:.2} ms per append",
        rate(SEQUENTIAL, sequential),
        sequential.as_secs_f64() * 1000.0 / SEQUENTIAL as f64
    );
    println!(
        "  {APPENDERS} threads, group commit:    {n} appends in {grouped:.2?} = {:>7.0}/s, \
         {thread_syncs} fsyncs ({:.1} records per fsync)",
        rate(n, grouped),
        n as f64 / thread_syncs as f64
    );
    println!(
        "  {APPENDERS} tokio tasks (append_async): {n} appends in {tasks:.2?} = {:>7.0}/s, \
         {task_syncs} fsyncs ({:.1} records per fsync)",
        rate(n, tasks),
        n as f64 / task_syncs as f64
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

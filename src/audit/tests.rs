//! The audit log as its callers see it: open, append, checkpoint, prove,
//! crash and reopen.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::*;
use crate::id::UploadId;

const ORIGIN: &str = "strongroom.test/audit";

fn open(dir: &Path) -> Audit {
    Audit::open(dir, ORIGIN).expect("audit log opens")
}

fn event(i: u64) -> Event {
    Event::new(EventKind::Resume, Outcome::Ok)
        .tenant("acme")
        .actor("token:t1")
        .request_id(format!("req-{i}"))
        .upload(UploadId::from_bytes([i as u8; 16]))
        .size(1000)
        .offset(i * 10)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn first_open_creates_private_keys_and_publishes_the_verifier_key() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    let audit = open(&dir);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(SIGNING_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(NAMES_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(RECORDS_FILE)), 0o600);

    let published = fs::read_to_string(dir.join(PUBLIC_KEY_FILE)).unwrap();
    assert!(published.ends_with('\n'));
    let key: VerifierKey = published.parse().unwrap();
    assert_eq!(&key, audit.verifier_key());
    assert_eq!(key.name(), ORIGIN);
    // The base64 key may itself contain '+': only the first two separate.
    let parts: Vec<&str> = published.trim_end().splitn(3, '+').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1].len(), 8);
    assert_eq!(audit.tree_head(), (0, empty_root()));
    drop(audit);

    let again = open(&dir);
    assert_eq!(again.verifier_key(), &key, "the same key after reopening");
}

#[test]
fn appends_are_numbered_durable_and_chained() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    for i in 0..5 {
        assert_eq!(audit.append(event(i)).unwrap(), i);
    }
    let stats = audit.stats();
    assert_eq!((stats.records, stats.syncs), (5, 5));
    let (size, root) = audit.tree_head();
    drop(audit);

    let records = lines(&dir.path().join(RECORDS_FILE));
    assert_eq!(records.len(), 5);
    let mut tree = merkle::Tree::new();
    let mut prev = None;
    for (i, line) in records.iter().enumerate() {
        let decoded = event::decode(line.as_bytes()).unwrap();
        assert_eq!(decoded.record.index, i as u64);
        assert_eq!(decoded.record.event, event(i as u64));
        assert_eq!(decoded.prev, prev);
        prev = Some(leaf_hash(line.as_bytes()));
        tree.push(leaf_hash(line.as_bytes()));
    }
    assert_eq!((size, root), (5, tree.root(5)));

    let reopened = open(dir.path());
    assert_eq!(reopened.tree_head(), (size, root));
    assert_eq!(reopened.append(event(5)).unwrap(), 5);
    drop(reopened);
    let records = lines(&dir.path().join(RECORDS_FILE));
    let last = event::decode(records[5].as_bytes()).unwrap();
    assert_eq!(last.prev, Some(leaf_hash(records[4].as_bytes())));
}

#[test]
fn invalid_events_are_refused_and_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    let err = audit
        .append(Event::new(EventKind::Create, Outcome::Ok).subject("Quarterly report.pdf"))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidEvent(InvalidField {
            field: "subject",
            ..
        })
    ));
    assert!(err.to_string().contains("subject"), "{err}");
    assert_eq!(audit.append(event(0)).unwrap(), 0);
    assert_eq!(lines(&dir.path().join(RECORDS_FILE)).len(), 1);
}

#[test]
fn checkpoints_cover_every_append_before_them_and_prove_inclusion_and_consistency() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    let key = audit.verifier_key().clone();

    let empty = audit.checkpoint().unwrap();
    assert_eq!((empty.size(), *empty.root()), (0, empty_root()));
    for i in 0..13 {
        audit.append(event(i)).unwrap();
    }
    let first = audit.checkpoint().unwrap();
    assert_eq!(first.size(), 13);
    assert_eq!(
        audit.checkpoint().unwrap(),
        first,
        "nothing new, nothing signed"
    );
    for i in 13..40 {
        audit.append(event(i)).unwrap();
    }
    let second = audit.checkpoint().unwrap();
    assert_eq!(second.size(), 40);
    assert_eq!(audit.stats().checkpoints, 3);
    assert_eq!(audit.latest_checkpoint(), Some(second.clone()));

    // Each checkpoint is a signed note the published key opens.
    for checkpoint in [&empty, &first, &second] {
        assert_eq!(
            &Checkpoint::open(checkpoint.note(), &key).unwrap(),
            checkpoint
        );
    }
    let file = fs::read_to_string(dir.path().join(CHECKPOINTS_FILE)).unwrap();
    assert_eq!(
        file,
        format!("{}\n{}\n{}\n", empty.note(), first.note(), second.note())
    );

    for index in 0..40 {
        let leaf = audit.leaf_hash(index).unwrap();
        let proof = audit.inclusion_proof(index, 40).unwrap();
        assert!(verify_inclusion(&leaf, index, 40, &proof, second.root()));
        if index < 13 {
            let proof = audit.inclusion_proof(index, 13).unwrap();
            assert!(verify_inclusion(&leaf, index, 13, &proof, first.root()));
        }
    }
    let proof = audit.consistency_proof(13, 40).unwrap();
    assert!(verify_consistency(
        13,
        40,
        first.root(),
        second.root(),
        &proof
    ));
    assert!(!verify_consistency(
        13,
        40,
        second.root(),
        first.root(),
        &proof
    ));

    assert!(matches!(
        audit.inclusion_proof(40, 40),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        audit.inclusion_proof(0, 41),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        audit.consistency_proof(13, 41),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(audit.leaf_hash(40), Err(Error::OutOfRange { .. })));

    drop(audit);
    let reopened = open(dir.path());
    assert_eq!(reopened.latest_checkpoint(), Some(second.clone()));
    assert_eq!(reopened.checkpoint().unwrap(), second, "still nothing new");
}

#[test]
fn keyed_names_hide_filenames_but_stay_linkable() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    let name = audit.keyed_name("Quarterly report (draft).pdf");
    assert_eq!(name.as_str().len(), 64);
    assert!(event::parse_hash(name.as_str()).is_some());
    assert_eq!(audit.keyed_name("Quarterly report (draft).pdf"), name);
    assert_ne!(audit.keyed_name("Quarterly report (final).pdf"), name);
    audit
        .append(Event::new(EventKind::Create, Outcome::Ok).name(name.clone()))
        .unwrap();
    drop(audit);

    let records = fs::read_to_string(dir.path().join(RECORDS_FILE)).unwrap();
    assert!(records.contains(name.as_str()));
    assert!(!records.contains("Quarterly"), "{records}");
    assert_eq!(
        open(dir.path()).keyed_name("Quarterly report (draft).pdf"),
        name
    );

    // Another appliance's key gives another value for the same name.
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        open(other.path()).keyed_name("Quarterly report (draft).pdf"),
        name
    );
}

#[test]
fn a_torn_last_record_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    for i in 0..5 {
        audit.append(event(i)).unwrap();
    }
    let head = audit.tree_head();
    drop(audit);
    let path = dir.path().join(RECORDS_FILE);
    let clean_len = fs::metadata(&path).unwrap().len();

    // What a crash halfway through writing record 5 leaves.
    let torn = event::encode(5, None, 0, &event(5));
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&torn[..torn.len() / 2])
        .unwrap();

    let audit = open(dir.path());
    assert_eq!(fs::metadata(&path).unwrap().len(), clean_len);
    assert_eq!(audit.tree_head(), head);
    assert_eq!(audit.append(event(5)).unwrap(), 5);
    drop(audit);
    assert_eq!(lines(&path).len(), 6);
    assert_eq!(open(dir.path()).tree_head().0, 6);
}

#[test]
fn a_torn_last_checkpoint_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    audit.append(event(0)).unwrap();
    let first = audit.checkpoint().unwrap();
    audit.append(event(1)).unwrap();
    let second = audit.checkpoint().unwrap();
    drop(audit);
    let path = dir.path().join(CHECKPOINTS_FILE);
    let full = fs::read(&path).unwrap();
    // Lose the blank line and half the signature of the second entry.
    fs::write(&path, &full[..full.len() - 40]).unwrap();

    let audit = open(dir.path());
    assert_eq!(audit.latest_checkpoint(), Some(first.clone()));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}\n", first.note())
    );
    let again = audit.checkpoint().unwrap();
    assert_eq!(again.size(), second.size());
    drop(audit);
    assert_eq!(open(dir.path()).latest_checkpoint(), Some(again));
}

#[test]
fn damage_that_is_not_a_torn_tail_stops_the_open_and_names_the_index() {
    let setup = || {
        let dir = tempfile::tempdir().unwrap();
        let audit = open(dir.path());
        for i in 0..8 {
            audit.append(event(i)).unwrap();
        }
        audit.checkpoint().unwrap();
        dir
    };
    let rewrite = |dir: &Path, edit: &dyn Fn(&mut Vec<String>)| {
        let path = dir.join(RECORDS_FILE);
        let mut records = lines(&path);
        edit(&mut records);
        let text: String = records.iter().map(|l| format!("{l}\n")).collect();
        fs::write(&path, text).unwrap();
    };
    let corrupt_index = |dir: &Path| match Audit::open(dir, ORIGIN) {
        Err(Error::Corrupt { index, reason, .. }) => (index, reason),
        other => panic!("expected a corrupt log, got {other:?}"),
    };

    // Unparseable record 3.
    let dir = setup();
    rewrite(dir.path(), &|r| r[3].insert(0, ' '));
    let (index, reason) = corrupt_index(dir.path());
    assert_eq!(index, 3, "{reason}");

    // Record 2 edited but still valid: record 3's prev gives it away.
    let dir = setup();
    rewrite(dir.path(), &|r| r[2] = r[2].replace("req-2", "req-9"));
    assert_eq!(corrupt_index(dir.path()).0, 2);

    // Record 5 dropped.
    let dir = setup();
    rewrite(dir.path(), &|r| {
        r.remove(5);
    });
    assert_eq!(corrupt_index(dir.path()).0, 5);

    // The last record edited (no successor to notice): the checkpoint does.
    let dir = setup();
    rewrite(dir.path(), &|r| r[7] = r[7].replace("req-7", "req-9"));
    match Audit::open(dir.path(), ORIGIN) {
        Err(Error::CorruptCheckpoint {
            number: 0, reason, ..
        }) => {
            assert!(reason.contains("does not match"), "{reason}")
        }
        other => panic!("expected a corrupt checkpoint, got {other:?}"),
    }

    // Whole records cut from the end, below the checkpoint.
    let dir = setup();
    rewrite(dir.path(), &|r| r.truncate(6));
    let (index, reason) = corrupt_index(dir.path());
    assert_eq!(index, 6, "{reason}");

    // A complete but garbled last line is not a torn record.
    let dir = setup();
    let path = dir.path().join(RECORDS_FILE);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"v\":1}\n")
        .unwrap();
    assert_eq!(corrupt_index(dir.path()).0, 8);
}

#[test]
fn a_forged_latest_checkpoint_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    audit.append(event(0)).unwrap();
    let real = audit.checkpoint().unwrap();
    drop(audit);
    // Same head, signed by another key under our name.
    let mallory = crate::crypto::ed25519::SigningKey::from_seed(&[7; 32]);
    let mallory_key = VerifierKey::new(ORIGIN, mallory.public_key()).unwrap();
    let forged = Checkpoint::sign(&mallory, &mallory_key, real.size(), *real.root());
    fs::write(
        dir.path().join(CHECKPOINTS_FILE),
        format!("{}\n", forged.note()),
    )
    .unwrap();
    match Audit::open(dir.path(), ORIGIN) {
        Err(Error::CorruptCheckpoint {
            number: 0, reason, ..
        }) => {
            assert!(reason.contains("no signature"), "{reason}")
        }
        other => panic!("expected a refused checkpoint, got {other:?}"),
    }
}

#[test]
fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    let err = Audit::open(dir.path(), ORIGIN).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("another process"), "{err}");
    drop(audit);
    open(dir.path());
}

#[test]
fn a_lost_key_or_a_changed_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let audit = open(dir.path());
    audit.append(event(0)).unwrap();
    drop(audit);

    let err = Audit::open(dir.path(), "elsewhere.test/audit").unwrap_err();
    assert!(matches!(err, Error::Key { .. }), "{err}");
    assert!(err.to_string().contains("origin must not change"), "{err}");

    for bad in ["", "has space", "a+b", "tab\there"] {
        assert!(matches!(
            Audit::open(dir.path(), bad),
            Err(Error::InvalidOrigin(_))
        ));
    }

    fs::rename(
        dir.path().join(SIGNING_KEY_FILE),
        dir.path().join("audit.key.bak"),
    )
    .unwrap();
    let err = Audit::open(dir.path(), ORIGIN).unwrap_err();
    assert!(matches!(err, Error::Key { .. }), "{err}");
    assert!(
        err.to_string().contains("restore it from a backup"),
        "{err}"
    );
    assert!(
        !dir.path().join(SIGNING_KEY_FILE).exists(),
        "no new key was made"
    );

    fs::rename(
        dir.path().join("audit.key.bak"),
        dir.path().join(SIGNING_KEY_FILE),
    )
    .unwrap();
    fs::set_permissions(
        dir.path().join(SIGNING_KEY_FILE),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = Audit::open(dir.path(), ORIGIN).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Crypto(crate::crypto::Error::KeyFilePermissions { .. })
        ),
        "{err}"
    );
}

#[test]
fn concurrent_appends_get_distinct_indexes_and_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let audit = Arc::clone(&audit);
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| audit.append(event(t * 100 + i)).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut indexes: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..200).collect::<Vec<u64>>());
    let stats = audit.stats();
    assert_eq!(stats.records, 200);
    assert!(stats.syncs <= 200, "{stats:?}");
    let head = audit.tree_head();
    drop(audit);
    // The file is in index order with an unbroken chain: it reopens.
    assert_eq!(open(dir.path()).tree_head(), head);
}

#[test]
fn export_and_verify_round_trip_and_catch_an_edit() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("audit");
    let audit = open(&dir);
    for i in 0..30 {
        audit.append(event(i)).unwrap();
        if i % 10 == 9 {
            audit.checkpoint().unwrap();
        }
    }
    // Appended after the last checkpoint: not exported.
    audit.append(event(30)).unwrap();
    let key = audit.verifier_key().clone();

    let out = root.path().join("export");
    let exported = export(&dir, &out).unwrap();
    assert_eq!(
        (exported.records, exported.checkpoints, exported.unsigned),
        (30, 3, 1)
    );
    assert_eq!(exported.latest.size(), 30);
    let verified = verify(&out, &key).unwrap();
    assert_eq!(verified.tampered, None);
    assert_eq!((verified.records, verified.checkpoints), (30, 3));
    assert_eq!(verified.latest.as_ref(), Some(&exported.latest));

    // The live directory has the unsigned record 30.
    let live = verify(&dir, &key).unwrap().tampered.unwrap();
    assert_eq!(live.index, 30, "{live}");

    // Exporting over an earlier export is refused rather than mixed.
    assert!(matches!(export(&dir, &out), Err(Error::Io { .. })));

    let path = out.join(RECORDS_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replacen("req-14", "req-99", 1)).unwrap();
    let tampered = verify(&out, &key).unwrap().tampered.unwrap();
    assert_eq!(tampered.index, 14, "{tampered}");

    let stranger = VerifierKey::new(ORIGIN, [9; 32]).unwrap();
    let unsigned = verify(&dir, &stranger).unwrap().tampered.unwrap();
    assert_eq!(unsigned.index, 0, "{unsigned}");
}

#[test]
fn run_checkpoints_signs_a_last_checkpoint_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(open(dir.path()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_checkpoints(Arc::clone(&audit), async {
            let _ = stopped.await;
        }));
        for i in 0..20 {
            assert_eq!(audit.append_async(event(i)).await.unwrap(), i);
        }
        stop.send(()).unwrap();
        task.await.unwrap();
    });
    assert_eq!(audit.latest_checkpoint().map(|c| c.size()), Some(20));
}

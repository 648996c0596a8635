//! The admin commands of the real binary: `policy check`, `plugin install`,
//! `plugin list` and `plugin test`, run as processes on the components
//! `plugins/build.sh` builds into `plugins/dist/`. Each `plugin test` compiles
//! its plugin into a throwaway cache, about a second per test.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Far above any command here (a cold compile is about a second); a command
/// still running then is killed and the test fails instead of hanging.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dist(name: &str) -> PathBuf {
    let path = repo().join("plugins/dist").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run plugins/build.sh first",
        path.display()
    );
    path
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(strongroom::crypto::sha256(&std::fs::read(path).unwrap()))
}

/// A finished `strongroom` process.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
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
}

/// Runs `strongroom ARGS` from the repository root.
fn strongroom<I, S>(args: I) -> Ran
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strongroom starts");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).expect("utf-8 output");
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            panic!("strongroom ran past {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        elapsed: started.elapsed(),
    }
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A policy with content-inspector pinned by `pin`, `extra` appended.
fn policy_with_pin(dir: &Path, pin: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[defaults]\nchain = [\"content-inspector\"]\n\n\
         [plugins.content-inspector]\npath = {path:?}\nsha256 = \"{pin}\"\n{extra}",
        path = dist("content-inspector").display().to_string(),
    );
    write(dir, "policy.toml", text)
}

fn text(len: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

// --- policy check ------------------------------------------------------------

#[test]
fn policy_check_accepts_the_shipped_policy_and_names_its_plugins() {
    let ran = strongroom(["policy", "check"]);
    ran.assert_code(0)
        .assert_stdout("chain (defaults): content-inspector -> provenance -> anomaly")
        .assert_stdout("policy policies/default.toml: ok");
    for plugin in ["content-inspector", "provenance", "anomaly"] {
        let line = ran
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("plugin {plugin}: ")))
            .unwrap_or_else(|| panic!("no line for {plugin}:\n{}", ran.stdout));
        assert!(
            line.contains(&format!("{plugin}.wasm")) && line.ends_with("pin ok"),
            "{line}"
        );
    }
}

#[test]
fn policy_check_points_at_the_line_of_a_typo_or_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let pin = sha256_hex(&dist("content-inspector"));
    // Lines 1-6 are the chain and the plugin; the extra key is line 7.
    let typo = policy_with_pin(dir.path(), &pin, "deadlin = \"1s\"\n");
    strongroom(["policy".as_ref(), "check".as_ref(), typo.as_os_str()])
        .assert_code(1)
        .assert_stderr(&format!("policy {} line 7: ", typo.display()))
        .assert_stderr("deadlin");

    let bad = policy_with_pin(dir.path(), &pin, "on_failure = \"explode\"\n");
    strongroom(["policy".as_ref(), "check".as_ref(), bad.as_os_str()])
        .assert_code(1)
        .assert_stderr("line 7: ")
        .assert_stderr("explode");
}

#[test]
fn policy_check_names_a_plugin_whose_pin_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let actual = sha256_hex(&dist("content-inspector"));
    let pinned = format!("{}0", &actual[..63]);
    assert_ne!(pinned, actual);
    let policy = policy_with_pin(dir.path(), &pinned, "");
    let ran = strongroom(["policy".as_ref(), "check".as_ref(), policy.as_os_str()]);
    // The pin is on line 6.
    ran.assert_code(1)
        .assert_stderr(&format!(
            "policy {} line 6: plugin content-inspector: sha256 of ",
            policy.display()
        ))
        .assert_stderr(&format!("is {actual}, but the policy pins {pinned}"));
    assert!(!ran.stdout.contains("pin ok"), "{}", ran.stdout);
}

#[test]
fn policy_check_names_a_missing_component() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[plugins.gone]\npath = \"gone.wasm\"\nsha256 = \"{}\"\n",
        "ab".repeat(32)
    );
    let policy = write(dir.path(), "policy.toml", text);
    strongroom(["policy".as_ref(), "check".as_ref(), policy.as_os_str()])
        .assert_code(1)
        .assert_stderr("line 2: plugin gone: cannot read ")
        .assert_stderr("gone.wasm");
}

// --- plugin install and list ---------------------------------------------------

#[test]
fn plugin_install_prints_the_pin_and_a_policy_section_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let wasm = dist("content-inspector");
    let pin = sha256_hex(&wasm);
    let install = || {
        strongroom([
            "plugin".as_ref(),
            "install".as_ref(),
            wasm.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ])
    };

    let first = install();
    first
        .assert_code(0)
        .assert_stdout(&format!("sha256    {pin}\n"))
        .assert_stdout("strongroom:plugin/host@0.1")
        .assert_stdout("artifact  compiled in ");
    let installed = data.join("plugins/content-inspector.wasm");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&wasm).unwrap()
    );
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);

    install()
        .assert_code(0)
        .assert_stdout(&format!("sha256    {pin}\n"))
        .assert_stdout("artifact  cached");

    // The printed section, pasted into a policy, passes its pin check.
    let (_, section) = first
        .stdout
        .split_once("Pin it in a policy:\n")
        .expect("a policy section");
    assert!(
        section.contains(&format!("sha256 = \"{pin}\"")),
        "{section}"
    );
    let policy = write(
        dir.path(),
        "policy.toml",
        format!("[defaults]\nchain = [\"content-inspector\"]\n{section}"),
    );
    strongroom(["policy".as_ref(), "check".as_ref(), policy.as_os_str()])
        .assert_code(0)
        .assert_stdout("plugin content-inspector: ")
        .assert_stdout("pin ok");
}

#[test]
fn plugin_install_refuses_a_forbidden_import() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    strongroom([
        "plugin".as_ref(),
        "install".as_ref(),
        dist("hostile-forbidden-import").as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
    .assert_code(1)
    .assert_stderr("imports `strongroom:evil/net@0.1.0`");
    assert!(!data.join("plugins/hostile-forbidden-import.wasm").exists());
}

#[test]
fn plugin_install_refuses_what_is_not_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let script = write(dir.path(), "virus.wasm", "#!/bin/sh\nrm -rf /\n");
    strongroom([
        "plugin".as_ref(),
        "install".as_ref(),
        script.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
    .assert_code(1)
    .assert_stderr("not a WebAssembly component (not WebAssembly at all)");
    assert!(!data.join("plugins/virus.wasm").exists());
}

#[test]
fn plugin_install_refuses_a_name_no_policy_could_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    strongroom([
        "plugin".as_ref(),
        "install".as_ref(),
        dist("content-inspector").as_os_str(),
        "--name".as_ref(),
        "Content Inspector".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
    .assert_code(1)
    .assert_stderr("plugin name \"Content Inspector\" is not 1 to 64 of [a-z0-9_-]");
    assert!(!data.exists(), "nothing is created for a refused name");
}

#[test]
fn plugin_list_shows_what_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let list = || {
        strongroom([
            "plugin".as_ref(),
            "list".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ])
    };
    list()
        .assert_code(0)
        .assert_stdout("no plugins installed in ");

    let wasm = dist("provenance");
    strongroom([
        "plugin".as_ref(),
        "install".as_ref(),
        wasm.as_os_str(),
        "--name".as_ref(),
        "signed-by".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
    .assert_code(0);
    let ran = list();
    ran.assert_code(0);
    let line = ran
        .stdout
        .lines()
        .find(|line| line.starts_with("signed-by "))
        .unwrap_or_else(|| panic!("no line for signed-by:\n{}", ran.stdout));
    assert!(line.contains(&sha256_hex(&wasm)), "{line}");
    assert!(line.ends_with("artifact cached"), "{line}");
}

// --- plugin test ---------------------------------------------------------------

/// `strongroom plugin test PLUGIN SAMPLE ARGS...` on `sample` written to a
/// temporary file.
fn plugin_test(plugin: &str, sample: &[u8], args: &[&str]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let sample = write(dir.path(), "sample", sample);
    let mut command: Vec<std::ffi::OsString> = vec![
        "plugin".into(),
        "test".into(),
        dist(plugin).into(),
        sample.into(),
    ];
    command.extend(args.iter().map(Into::into));
    strongroom(command)
}

#[test]
fn plugin_test_rejects_eicar_and_names_the_rule() {
    plugin_test(
        "content-inspector",
        EICAR,
        &["--meta", "filename=notes.txt"],
    )
    .assert_code(3)
    .assert_stdout("verdict   reject (malware-signature): ")
    .assert_stdout("finding   eicar (critical) at byte 0: ");
}

#[test]
fn plugin_test_accepts_plain_text() {
    plugin_test(
        "content-inspector",
        &text(600_000),
        &[
            "--meta",
            "filename=notes.txt",
            "--meta",
            "filetype=text/plain",
        ],
    )
    .assert_code(0)
    .assert_stdout("verdict   accept\n")
    .assert_stdout("label     detected-type = text\n")
    // 600 000 bytes in 256 KiB chunks: three feeds.
    .assert_stdout("fed       600000 bytes in 3 chunks of up to 256.0 KiB\n");
}

#[test]
fn plugin_test_finds_eicar_across_a_chunk_boundary() {
    let mut sample = text(4000);
    // Bytes 980..1048: the first 20 in chunk one, the rest in chunk two.
    sample[980..980 + EICAR.len()].copy_from_slice(EICAR);
    let ran = plugin_test("content-inspector", &sample, &["--chunk", "1000"]);
    ran.assert_code(3)
        .assert_stdout("finding   eicar (critical) at byte 980: ");
    // The sample really went in 1000-byte pieces: at least the two the
    // signature spans (the plugin scans a window, so it may decide only at
    // the end).
    let fed = ran
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("fed       "))
        .expect("a fed line");
    let chunks: u64 = fed
        .split(" bytes in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk count in {fed:?}"));
    assert!(chunks >= 2, "{fed}");
    assert!(fed.contains(" of up to 1000 B"), "{fed}");
}

#[test]
fn plugin_test_flags_a_png_declared_as_a_pdf() {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend_from_slice(&[0u8; 200]);
    plugin_test("content-inspector", &png, &["--meta", "filename=x.pdf"])
        // content-inspector's default mismatch_action is quarantine.
        .assert_code(4)
        .assert_stdout("verdict   quarantine: the content is png but was named 'x.pdf'")
        .assert_stdout("finding   type-mismatch (medium): was named 'x.pdf'")
        .assert_stdout("label     detected-type = png");
}

#[test]
fn plugin_test_config_reaches_the_plugin() {
    // With mismatches set to reject, the same upload is refused.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend_from_slice(&[0u8; 200]);
    plugin_test(
        "content-inspector",
        &png,
        &[
            "--meta",
            "filename=x.pdf",
            "--config",
            r#"{"mismatch_action": "reject"}"#,
        ],
    )
    .assert_code(3)
    .assert_stdout("verdict   reject (type-mismatch): ");
}

#[test]
fn plugin_test_stops_a_looping_plugin_at_its_deadline() {
    let ran = plugin_test("hostile-loop", &text(1000), &["--deadline", "200ms"]);
    ran.assert_code(5)
        .assert_stdout("verdict   failed: timed out (a call ran past its 200ms deadline)");
    // Compiling takes about a second; the fuel backstop would take 5-10 s
    // more and report "ran out of fuel" instead.
    println!("hostile-loop with a 200ms deadline: {:?}", ran.elapsed);
}

#[test]
fn plugin_test_reports_a_panicking_plugin() {
    plugin_test("hostile-panic", &text(1000), &[])
        .assert_code(5)
        .assert_stdout("verdict   failed: panicked: ")
        .assert_stdout("hostile-panic: refusing a chunk of 1000 bytes");
}

#[test]
fn plugin_test_refuses_bad_arguments_before_running_anything() {
    // Usage errors are clap's: status 2.
    plugin_test("content-inspector", b"x", &["--chunk", "0"])
        .assert_code(2)
        .assert_stderr("chunk size must be between 1 byte");
    plugin_test("content-inspector", b"x", &["--meta", "novalue"])
        .assert_code(2)
        .assert_stderr("expected KEY=VALUE");
    // A config that is not a JSON object is caught before compiling.
    plugin_test("content-inspector", b"x", &["--config", "[1]"])
        .assert_code(1)
        .assert_stderr("--config must be a JSON object");
}

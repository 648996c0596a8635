//! tus uploads of local files: creation with metadata, PATCHes of one chunk
//! each with an `Upload-Checksum`, resumption from the server's offset
//! (after a failure, and in a later run through the state file), and, for
//! large files, partial uploads sent at once and joined by a final one
//! (`Upload-Concat`). Owns the protocol's client side and its retry rules;
//! never prints and never holds more than one chunk per part in memory.
//!
//! The outcome comes from the answer that completed the upload:
//! `Strongroom-Disposition` (released, pending, quarantined) with
//! `Strongroom-Reason`, or a `422 upload_rejected` naming the plugin and
//! rule that refused it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};

use super::state::{Entry, Key, Part, Plan, Store};
use super::{Client, Error, Problem, TUS_VERSION, joined};

/// Uploads need this scope: it covers creating, patching and asking about
/// the tenant's own uploads.
pub const SCOPE: &str = "upload:create";

/// The largest chunk one PATCH carries: a chunk is held in memory while it
/// is sent, once per part in flight.
pub const MAX_CHUNK: usize = 256 << 20;

/// Offset disagreements and checksum failures are retried at once (after a
/// HEAD), but not forever: past this many in a row something is wrong.
const MAX_RESYNCS: u32 = 8;

/// Where a completed upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Released,
    Pending,
    Quarantined,
}

impl Disposition {
    fn parse(text: &str) -> Option<Disposition> {
        match text {
            "released" => Some(Disposition::Released),
            "pending" => Some(Disposition::Pending),
            "quarantined" => Some(Disposition::Quarantined),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Released => "released",
            Disposition::Pending => "pending",
            Disposition::Quarantined => "quarantined",
        }
    }
}

/// What the server says about an upload (the tus headers of a HEAD, PATCH
/// or creation answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `None` for a final upload whose parts are not all complete.
    pub offset: Option<u64>,
    pub length: Option<u64>,
    pub disposition: Option<Disposition>,
    pub reason: Option<String>,
    /// `Upload-Expires`, as sent.
    pub expires: Option<String>,
    /// `Upload-Concat`, as sent.
    pub concat: Option<String>,
}

impl Status {
    fn read(what: &str, headers: &HeaderMap) -> Result<Status, Error> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let number = |name: &str| -> Result<Option<u64>, Error> {
            text(name)
                .map(|v| {
                    v.parse().map_err(|_| Error::Protocol {
                        what: what.to_owned(),
                        reason: format!("{name} {v:?} is not a number"),
                    })
                })
                .transpose()
        };
        let disposition = match text("strongroom-disposition") {
            None => None,
            Some(value) => Some(Disposition::parse(&value).ok_or_else(|| Error::Protocol {
                what: what.to_owned(),
                reason: format!("unknown Strongroom-Disposition {value:?}"),
            })?),
        };
        Ok(Status {
            offset: number("upload-offset")?,
            length: number("upload-length")?,
            disposition,
            reason: text("strongroom-reason"),
            expires: text("upload-expires"),
            concat: text("upload-concat"),
        })
    }
}

/// How the upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Released,
    /// Stored, but the verdict is not in yet.
    Pending {
        reason: Option<String>,
    },
    /// Stored and held for an admin: not downloadable.
    Quarantined {
        reason: Option<String>,
    },
    /// Refused by inspection and destroyed.
    Rejected {
        plugin: Option<String>,
        rule: Option<String>,
        reason: Option<String>,
        detail: Option<String>,
    },
}

impl Outcome {
    fn of(status: &Status) -> Outcome {
        let reason = status.reason.clone();
        match status.disposition {
            Some(Disposition::Released) => Outcome::Released,
            Some(Disposition::Quarantined) => Outcome::Quarantined { reason },
            Some(Disposition::Pending) => Outcome::Pending { reason },
            // Complete but not committed yet: the verdict is still to come.
            None => Outcome::Pending {
                reason: reason.or_else(|| Some("the server has not settled it yet".into())),
            },
        }
    }

    fn rejected(problem: &Problem) -> Outcome {
        Outcome::Rejected {
            plugin: problem.plugin.clone(),
            rule: problem.rule.clone(),
            reason: problem.reason.clone(),
            detail: problem.detail.clone(),
        }
    }
}

/// A finished upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The upload id, which is the object id once committed.
    pub id: String,
    pub url: String,
    pub outcome: Outcome,
    /// Bytes already on the server when this run began (a resumed upload).
    pub resumed_from: u64,
}

/// How to send.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bytes per PATCH, at most [`MAX_CHUNK`].
    pub chunk_size: usize,
    /// Partial uploads sent at once for a large file.
    pub parallel: usize,
    /// Files larger than this are sent as `parallel` parts.
    pub parallel_threshold: u64,
    /// Upload metadata (plain text; encoded here).
    pub metadata: Vec<(String, String)>,
}

/// A local file to upload, opened, with the key it has in the state file.
#[derive(Debug, Clone)]
pub struct Source {
    pub key: Key,
    file: Arc<File>,
}

impl Source {
    /// Opens the file at `key.path`. Blocking.
    pub fn open(key: Key) -> Result<Source, Error> {
        let file = File::open(&key.path).map_err(Error::io(&key.path))?;
        Ok(Source {
            key,
            file: Arc::new(file),
        })
    }
}

/// Called with the bytes the server has acknowledged so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Uploads `source`, continuing the upload the state file records for it if
/// the server still has it. The entry is dropped once the upload is settled
/// (released, pending, quarantined or rejected).
pub async fn upload(
    client: &Client,
    store: &Store,
    source: &Source,
    settings: &Settings,
    progress: Progress<'_>,
) -> Result<Uploaded, Error> {
    let run = Run {
        client,
        store,
        source,
        settings,
        progress,
    };
    let result = run.go().await;
    let settled = match result {
        Ok(uploaded) => Ok(uploaded),
        Err(Error::Refused { problem, .. }) if problem.has_code("upload_rejected") => {
            Ok(run.rejected(&problem).await)
        }
        Err(err) => Err(run.resumable(err).await),
    };
    if settled.is_ok() {
        store.remove(&source.key).await?;
    }
    settled
}

/// HEAD of an upload (or of a committed object's upload URL).
pub async fn head(client: &Client, url: &Url) -> Result<Status, Error> {
    let what = format!("HEAD {url}");
    let request = client
        .request(Method::HEAD, url.clone(), &[SCOPE.to_owned()])
        .await?
        .header("tus-resumable", TUS_VERSION);
    let response = match request.send().await {
        Ok(response) => response,
        Err(source) => return Err(Error::Transport { what, source }),
    };
    let status = response.status().as_u16();
    if status >= 400 {
        // A HEAD answer has no body: the status is all there is.
        let mut problem = Problem::status_only(status);
        problem.code = gone_code(status);
        return Err(Error::Refused {
            what,
            problem: Box::new(problem),
        });
    }
    Status::read(&what, response.headers())
}

/// The upload id in an upload URL: its last path segment.
pub fn id_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .to_owned()
}

/// Whether an error says the upload no longer exists (expired, destroyed,
/// or never on this server).
pub fn is_gone(err: &Error) -> bool {
    matches!(err, Error::Refused { problem, .. } if matches!(problem.status, 404 | 410))
}

fn gone_code(status: u16) -> Option<String> {
    match status {
        404 => Some("upload_not_found".into()),
        410 => Some("upload_expired".into()),
        _ => None,
    }
}

/// One file's upload in this run.
struct Run<'a> {
    client: &'a Client,
    store: &'a Store,
    source: &'a Source,
    settings: &'a Settings,
    progress: Progress<'a>,
}

/// Where each part stands after creation or a HEAD.
enum Start {
    /// Send the rest; the statuses are the parts' current ones.
    Send(Entry, Vec<Status>),
    /// Already complete: this is the answer to report.
    Done(Entry, Status),
}

impl Run<'_> {
    async fn go(&self) -> Result<Uploaded, Error> {
        let (start, resumed_from) = self.start().await?;
        let (entry, answer) = match start {
            Start::Done(entry, answer) => (entry, answer),
            Start::Send(entry, statuses) => self.send(entry, statuses).await?,
        };
        let url = entry
            .plan
            .result_url()
            .expect("a sent upload has its result URL")
            .to_owned();
        Ok(Uploaded {
            id: id_of(&url),
            outcome: Outcome::of(&answer),
            url,
            resumed_from,
        })
    }

    /// Resumes what the state file has, or creates the upload.
    async fn start(&self) -> Result<(Start, u64), Error> {
        if let Some(entry) = self.store.get(&self.source.key).await? {
            match self.resync(entry).await {
                Ok(start) => {
                    let acknowledged = match &start {
                        Start::Send(entry, _) | Start::Done(entry, _) => entry.plan.acknowledged(),
                    };
                    return Ok((start, acknowledged));
                }
                // Expired or destroyed on the server: start over.
                Err(err) if is_gone(&err) => self.store.remove(&self.source.key).await?,
                Err(err) => return Err(err),
            }
        }
        let start = self.create().await?;
        Ok((start, 0))
    }

    /// Asks the server where each recorded part stands.
    async fn resync(&self, mut entry: Entry) -> Result<Start, Error> {
        if let Plan::Parallel {
            final_url: Some(url),
            ..
        } = &entry.plan
        {
            let status = self.head_retrying(&parse_url(url)?).await?;
            return Ok(Start::Done(entry, status));
        }
        let mut statuses = Vec::new();
        for part in entry.plan.parts_mut() {
            let status = self.head_retrying(&parse_url(&part.url)?).await?;
            part.offset = status.offset.unwrap_or(0);
            statuses.push(status);
        }
        if let Plan::Single { part } = &entry.plan
            && part.offset == part.length
            && statuses[0].disposition.is_some()
        {
            // The answer to the last PATCH was lost; HEAD tells it again.
            let status = statuses.remove(0);
            return Ok(Start::Done(entry, status));
        }
        Ok(Start::Send(entry, statuses))
    }

    /// Creates the upload (or its parts) and records it at once, so that
    /// an interrupted run resumes it.
    async fn create(&self) -> Result<Start, Error> {
        let size = self.source.key.size;
        let parts = self
            .settings
            .parallel
            .min(usize::try_from(size).unwrap_or(usize::MAX));
        let (plan, statuses) = if parts > 1 && size > self.settings.parallel_threshold {
            self.create_parts(parts).await?
        } else {
            let metadata = encode_metadata(&self.settings.metadata);
            let (url, status) = self.create_one(Some(size), &metadata, None).await?;
            let part = Part {
                url: url.to_string(),
                start: 0,
                length: size,
                offset: status.offset.unwrap_or(0),
            };
            (Plan::Single { part }, vec![status])
        };
        let entry = Entry {
            key: self.source.key.clone(),
            created_at: unix_now(),
            plan,
        };
        self.store.put(entry.clone()).await?;
        if let (Plan::Single { part }, Some(status)) = (&entry.plan, statuses.first())
            && part.offset == part.length
            && status.disposition.is_some()
        {
            // An empty file is complete on creation.
            let status = status.clone();
            return Ok(Start::Done(entry, status));
        }
        Ok(Start::Send(entry, statuses))
    }

    async fn create_parts(&self, count: usize) -> Result<(Plan, Vec<Status>), Error> {
        let size = self.source.key.size;
        let span = size.div_ceil(count as u64);
        let mut parts = Vec::with_capacity(count);
        let mut statuses = Vec::with_capacity(count);
        let mut start = 0;
        while start < size {
            let length = span.min(size - start);
            let (url, status) = self.create_one(Some(length), "", Some("partial")).await?;
            parts.push(Part {
                url: url.to_string(),
                start,
                length,
                offset: status.offset.unwrap_or(0),
            });
            statuses.push(status);
            start += length;
        }
        let plan = Plan::Parallel {
            parts,
            final_url: None,
        };
        Ok((plan, statuses))
    }

    /// `POST /files/`, retried like every step. A retried creation may leave
    /// an unused upload behind on the server, which expires there.
    async fn create_one(
        &self,
        length: Option<u64>,
        metadata: &str,
        concat: Option<&str>,
    ) -> Result<(Url, Status), Error> {
        let mut failures = 0;
        loop {
            match self.try_create(length, metadata, concat).await {
                Ok(created) => return Ok(created),
                Err(err) => self.pause(&mut failures, err).await?,
            }
        }
    }

    async fn try_create(
        &self,
        length: Option<u64>,
        metadata: &str,
        concat: Option<&str>,
    ) -> Result<(Url, Status), Error> {
        let client = self.client;
        let url = client.url("files/")?;
        let what = format!("creating an upload at {url}");
        let mut request = client
            .request(Method::POST, url, &[SCOPE.to_owned()])
            .await?
            .header("tus-resumable", TUS_VERSION)
            .header(reqwest::header::CONTENT_LENGTH, "0");
        if let Some(length) = length {
            request = request.header("upload-length", length);
        }
        if !metadata.is_empty() {
            request = request.header("upload-metadata", metadata);
        }
        if let Some(concat) = concat {
            request = request.header("upload-concat", concat);
        }
        let response = client.send(&what, request).await?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol {
                what: what.clone(),
                reason: "the answer has no Location".into(),
            })?;
        let url = client.on_our_origin(client.url(location)?);
        let status = Status::read(&what, response.headers())?;
        Ok((url, status))
    }

    /// Sends every part's remaining bytes (all parts at once), then joins
    /// them when there are several. Returns the completing answer.
    async fn send(&self, entry: Entry, statuses: Vec<Status>) -> Result<(Entry, Status), Error> {
        let acked: Vec<AtomicU64> = entry
            .plan
            .parts()
            .iter()
            .map(|p| AtomicU64::new(p.offset))
            .collect();
        let shared = Mutex::new(entry);
        let sender = PartSender {
            run: self,
            entry: &shared,
            acked: &acked,
        };
        (self.progress)(sender.total());
        let sends = statuses
            .into_iter()
            .enumerate()
            .map(|(index, status)| sender.send_part(index, status));
        // Concurrent within this task: the waiting is on sockets, and the
        // reading and hashing of chunks runs on blocking threads.
        let mut answers = futures_util::future::try_join_all(sends).await?;
        let mut entry = shared.into_inner().unwrap_or_else(|e| e.into_inner());
        if matches!(entry.plan, Plan::Single { .. }) {
            return Ok((entry, answers.remove(0)));
        }
        let answer = self.join(&mut entry).await?;
        Ok((entry, answer))
    }

    /// Creates the final upload joining the parts, records it, and returns
    /// its answer (which settles the upload).
    async fn join(&self, entry: &mut Entry) -> Result<Status, Error> {
        let list: Vec<String> = entry
            .plan
            .parts()
            .iter()
            .map(|p| parse_url(&p.url).map(|u| u.path().to_owned()))
            .collect::<Result<_, _>>()?;
        let concat = format!("final;{}", list.join(" "));
        let metadata = encode_metadata(&self.settings.metadata);
        let (url, status) = self.create_one(None, &metadata, Some(&concat)).await?;
        if let Plan::Parallel { final_url, .. } = &mut entry.plan {
            *final_url = Some(url.to_string());
        }
        self.store.put(entry.clone()).await?;
        Ok(status)
    }

    /// HEAD, retried on transient failures.
    async fn head_retrying(&self, url: &Url) -> Result<Status, Error> {
        let mut failures = 0;
        loop {
            match head(self.client, url).await {
                Ok(status) => return Ok(status),
                Err(err) => self.pause(&mut failures, err).await?,
            }
        }
    }

    /// After a failure: waits before the next try if it is worth one,
    /// else hands the error back. An expired token is replaced first.
    async fn pause(&self, failures: &mut u32, err: Error) -> Result<(), Error> {
        let expired = err.code() == Some("token_expired");
        if !err.is_transient() && !expired {
            return Err(err);
        }
        *failures += 1;
        let Some(delay) = self.client.retry().delay(*failures, err.retry_after()) else {
            return Err(err);
        };
        if expired {
            self.client.forget_tokens();
        }
        tracing::debug!(error = %err, ?delay, "retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// A transient failure once the upload exists (creating the final
    /// upload, asking where the parts stand) leaves it resumable: said so,
    /// with what the state file recorded.
    async fn resumable(&self, err: Error) -> Error {
        if matches!(err, Error::Incomplete { .. }) || !err.is_transient() {
            return err;
        }
        match self.store.get(&self.source.key).await {
            Ok(Some(entry)) => Error::Incomplete {
                url: entry
                    .plan
                    .result_url()
                    .or(entry.plan.parts().first().map(|p| p.url.as_str()))
                    .unwrap_or_default()
                    .to_owned(),
                offset: entry.plan.acknowledged(),
                length: entry.key.size,
                source: Box::new(err),
            },
            _ => err,
        }
    }

    async fn rejected(&self, problem: &Problem) -> Uploaded {
        let url = self
            .store
            .get(&self.source.key)
            .await
            .ok()
            .flatten()
            .and_then(|e| {
                e.plan
                    .result_url()
                    .or(e.plan.parts().first().map(|p| p.url.as_str()))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        Uploaded {
            id: id_of(&url),
            url,
            outcome: Outcome::rejected(problem),
            resumed_from: 0,
        }
    }
}

/// Sends the parts of one upload, recording progress as it goes.
struct PartSender<'a, 'r> {
    run: &'a Run<'r>,
    /// The entry as recorded; each part updates its own offset. A std
    /// mutex: held to copy or update, never across an await.
    entry: &'a Mutex<Entry>,
    acked: &'a [AtomicU64],
}

impl PartSender<'_, '_> {
    fn total(&self) -> u64 {
        self.acked.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    fn part(&self, index: usize) -> Part {
        self.lock().plan.parts()[index].clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entry> {
        self.entry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// PATCHes chunk after chunk from the part's offset to its end. After
    /// a failure worth retrying: a pause, then HEAD for the offset the
    /// server really has, then on from there.
    async fn send_part(&self, index: usize, mut status: Status) -> Result<Status, Error> {
        let part = self.part(index);
        let url = parse_url(&part.url)?;
        let mut failures = 0;
        let mut resyncs = 0;
        loop {
            let offset = status.offset.unwrap_or(0);
            if offset >= part.length {
                return Ok(status);
            }
            let size = (part.length - offset).min(self.run.settings.chunk_size as u64);
            let chunk = read_chunk(self.run.source, part.start + offset, size).await?;
            match self.patch(&url, offset, chunk).await {
                Ok(next) => {
                    failures = 0;
                    resyncs = 0;
                    status = next;
                    self.record(index, status.offset.unwrap_or(offset)).await?;
                }
                Err(err) if needs_resync(&err) && resyncs < MAX_RESYNCS => {
                    resyncs += 1;
                    status = self.run.head_retrying(&url).await?;
                }
                Err(err) => {
                    let incomplete = |source: Error| Error::Incomplete {
                        url: part.url.clone(),
                        offset,
                        length: part.length,
                        source: Box::new(source),
                    };
                    self.run
                        .pause(&mut failures, err)
                        .await
                        .map_err(|err| wrap_unless_final(err, incomplete))?;
                    status = self
                        .run
                        .head_retrying(&url)
                        .await
                        .map_err(|err| wrap_unless_final(err, incomplete))?;
                }
            }
        }
    }

    async fn patch(&self, url: &Url, offset: u64, chunk: Chunk) -> Result<Status, Error> {
        let client = self.run.client;
        let what = format!("PATCH {url} at offset {offset}");
        let request = client
            .request(Method::PATCH, url.clone(), &[SCOPE.to_owned()])
            .await?
            .header("tus-resumable", TUS_VERSION)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/offset+octet-stream",
            )
            .header("upload-offset", offset)
            .header(
                "upload-checksum",
                format!("sha256 {}", BASE64.encode(chunk.sha256)),
            )
            .body(chunk.bytes);
        let response = client.send(&what, request).await?;
        let status = Status::read(&what, response.headers())?;
        if status.offset.is_none() {
            return Err(Error::Protocol {
                what,
                reason: "the answer has no Upload-Offset".into(),
            });
        }
        Ok(status)
    }

    async fn record(&self, index: usize, offset: u64) -> Result<(), Error> {
        self.acked[index].store(offset, Ordering::Relaxed);
        let snapshot = {
            let mut entry = self.lock();
            entry.plan.parts_mut()[index].offset = offset;
            entry.clone()
        };
        (self.run.progress)(self.total());
        self.run.store.put(snapshot).await
    }
}

/// A conflict about where the upload stands (`409 offset_mismatch`), or a
/// chunk the server received damaged (`460 checksum_mismatch`): ask with
/// HEAD and send again from there.
fn needs_resync(err: &Error) -> bool {
    matches!(err, Error::Refused { problem, .. }
        if problem.has_code("offset_mismatch") || problem.status == 460)
}

/// Errors that settle or doom the upload stay as they are (a rejection, a
/// refused credential); the others mean "stopped here, rerun to continue".
fn wrap_unless_final(err: Error, incomplete: impl FnOnce(Error) -> Error) -> Error {
    let settled = matches!(&err, Error::Refused { problem, .. }
        if problem.has_code("upload_rejected"));
    if settled || err.is_auth() || is_gone(&err) || !err.is_transient() {
        err
    } else {
        incomplete(err)
    }
}

struct Chunk {
    bytes: Bytes,
    sha256: [u8; 32],
}

/// Reads and hashes `size` bytes at `position`, on a blocking thread.
async fn read_chunk(source: &Source, position: u64, size: u64) -> Result<Chunk, Error> {
    let file = source.file.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut bytes = vec![0u8; usize::try_from(size).expect("a chunk fits in memory")];
        file.read_exact_at(&mut bytes, position)?;
        let sha256 = crate::crypto::sha256(&bytes);
        Ok::<_, std::io::Error>(Chunk {
            bytes: Bytes::from(bytes),
            sha256,
        })
    })
    .await;
    joined(read)?.map_err(|err| Error::FileRead {
        path: source.key.path.clone(),
        position,
        source: err,
    })
}

/// `Upload-Metadata`: `key base64(value)` pairs, comma-separated.
fn encode_metadata(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key} {}", BASE64.encode(value)))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_url(url: &str) -> Result<Url, Error> {
    Url::parse(url).map_err(|err| Error::BadUrl {
        url: url.to_owned(),
        reason: err.to_string(),
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_base64_per_value() {
        let pairs = vec![
            ("filename".to_owned(), "a b.txt".to_owned()),
            ("empty".to_owned(), String::new()),
        ];
        assert_eq!(encode_metadata(&pairs), "filename YSBiLnR4dA==,empty ");
    }

    #[test]
    fn ids_are_the_last_path_segment() {
        assert_eq!(id_of("http://h/files/abc"), "abc");
        assert_eq!(id_of("http://h/files/abc/"), "abc");
        assert_eq!(id_of("/files/abc?x=1"), "abc");
    }

    #[test]
    fn statuses_read_the_tus_and_verdict_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("upload-offset", "10".parse().unwrap());
        headers.insert("upload-length", "10".parse().unwrap());
        headers.insert("strongroom-disposition", "quarantined".parse().unwrap());
        headers.insert("strongroom-reason", "elf named pdf".parse().unwrap());
        let status = Status::read("t", &headers).unwrap();
        assert_eq!(
            Outcome::of(&status),
            Outcome::Quarantined {
                reason: Some("elf named pdf".into())
            }
        );
        headers.insert("strongroom-disposition", "maybe".parse().unwrap());
        assert!(Status::read("t", &headers).is_err());
        headers.remove("strongroom-disposition");
        headers.insert("upload-offset", "x".parse().unwrap());
        assert!(Status::read("t", &headers).is_err());
    }
}

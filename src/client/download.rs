//! Downloads of stored objects into a local `.part` file, checked against
//! the object's signed manifest. The body is streamed to a writer thread
//! that hashes as it writes (a bounded queue between them, so memory stays
//! the same whatever the object's size); an existing `.part` is continued
//! with `Range` + `If-Range` and its bytes are hashed again, because the
//! manifest speaks for the whole file. Owns the download side of the
//! protocol; never prints and never renames the result into place (the
//! command does, once everything checks out).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::{Client, Error, Problem, joined, read_small};
use crate::crypto::Sha256;
use crate::id::UploadId;
use crate::store::manifest::{Manifest, PublicKey, SignedManifest};

/// The largest manifest read: real ones are a few KiB.
pub const MAX_MANIFEST: usize = 1 << 20;

/// The key document is about 150 bytes.
const MAX_KEY_DOCUMENT: usize = 64 << 10;

/// Chunks queued between the socket and the writer thread: enough to keep
/// both busy, few enough that a slow disk holds the network back.
const WRITE_QUEUE: usize = 8;

/// Read size when hashing an existing `.part`.
const HASH_BUFFER: usize = 64 << 10;

/// The longest file name taken from the server.
const MAX_NAME: usize = 200;

/// Where the key document is published.
const KEY_PATH: &str = ".well-known/strongroom/manifest-key";

/// Called with the bytes of the object the `.part` holds so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// The object to download: by id (on the configured server) or by a URL,
/// possibly presigned.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: UploadId,
    object: Url,
    manifest: Url,
    /// Carries its own authorisation in the query: no token is sent.
    presigned: bool,
}

impl Target {
    /// `text` is an object id, or an `…/objects/<id>` URL (a presigned one
    /// keeps its query, which also authorises the manifest).
    pub fn parse(client: &Client, text: &str) -> Result<Target, Error> {
        if let Ok(id) = text.parse::<UploadId>() {
            return Ok(Target {
                id,
                object: client.url(&format!("objects/{id}"))?,
                manifest: client.url(&format!("objects/{id}/manifest"))?,
                presigned: false,
            });
        }
        let bad = |reason: &str| Error::BadUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let object = Url::parse(text).map_err(|_| {
            bad("neither an object id (32 hex digits) nor an http(s) URL of an object")
        })?;
        let id = object
            .path()
            .strip_prefix("/objects/")
            .or_else(|| object.path().rsplit_once("/objects/").map(|(_, id)| id))
            .and_then(|id| id.parse::<UploadId>().ok())
            .ok_or_else(|| bad("the path does not end in /objects/<id>"))?;
        let mut manifest = object.clone();
        manifest.set_path(&format!("{}/manifest", object.path()));
        let presigned = object.query_pairs().any(|(name, _)| name == "signature");
        Ok(Target {
            id,
            object,
            manifest,
            presigned,
        })
    }

    pub fn url(&self) -> &Url {
        &self.object
    }

    async fn request(
        &self,
        client: &Client,
        method: Method,
        url: &Url,
    ) -> Result<RequestBuilder, Error> {
        if self.presigned {
            return Ok(client.http.request(method, url.clone()));
        }
        let scopes = [format!("object:read:{}", self.id)];
        client.request(method, url.clone(), &scopes).await
    }
}

/// What the server says about the object before any byte is fetched.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub length: u64,
    /// The validator for `If-Range`.
    pub etag: Option<String>,
    /// The file name from `Content-Disposition`, made harmless.
    pub filename: Option<String>,
}

/// HEAD of the object. An error answer to HEAD has no body, so a refused
/// HEAD is asked again with GET to learn the problem's code (quarantined,
/// pending, not found, not authorised).
pub async fn inspect(client: &Client, target: &Target) -> Result<ObjectInfo, Error> {
    let what = format!("HEAD {}", target.object);
    let request = target.request(client, Method::HEAD, &target.object).await?;
    let response = request.send().await.map_err(|source| Error::Transport {
        what: what.clone(),
        source,
    })?;
    if response.status().as_u16() >= 400 {
        let status = response.status().as_u16();
        return Err(explain_refusal(client, target, status).await);
    }
    let headers = response.headers();
    let length = headers
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Protocol {
            what: what.clone(),
            reason: "the answer has no Content-Length".into(),
        })?;
    let etag = headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let filename = headers
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(disposition_filename);
    Ok(ObjectInfo {
        length,
        etag,
        filename,
    })
}

async fn explain_refusal(client: &Client, target: &Target, head_status: u16) -> Error {
    let what = format!("GET {}", target.object);
    let problem = match target.request(client, Method::GET, &target.object).await {
        Ok(request) => match request.send().await {
            Ok(response) if response.status().as_u16() >= 400 => Problem::read(response).await,
            _ => Problem::status_only(head_status),
        },
        Err(err) => return err,
    };
    Error::Refused {
        what,
        problem: Box::new(problem),
    }
}

/// The signed manifest document (`GET /objects/{id}/manifest`), raw.
pub async fn manifest(client: &Client, target: &Target) -> Result<Vec<u8>, Error> {
    let what = format!("GET {}", target.manifest);
    let request = target
        .request(client, Method::GET, &target.manifest)
        .await?;
    let response = client.send(&what, request).await?;
    read_small(&what, response, MAX_MANIFEST).await
}

/// The manifest key the server publishes. Only as trustworthy as the
/// connection it came over: a pinned key (`--manifest-key`) is better.
pub async fn published_key(client: &Client) -> Result<PublicKey, Error> {
    let url = client.url(KEY_PATH)?;
    let what = format!("GET {url}");
    let response = client
        .send(&what, client.http.request(Method::GET, url))
        .await?;
    let bytes = read_small(&what, response, MAX_KEY_DOCUMENT).await?;
    let text = String::from_utf8_lossy(&bytes);
    PublicKey::parse(&text).map_err(|err| Error::Protocol {
        what,
        reason: err.to_string(),
    })
}

/// Checks the manifest's signature with `key` and that it is the
/// manifest of object `id`; the manifest it signs, or why not.
pub fn open_manifest(document: &[u8], key: &PublicKey, id: UploadId) -> Result<Manifest, Error> {
    let manifest = SignedManifest::open(document, key)
        .map_err(|err| Error::Verification(format!("the manifest of object {id}: {err}")))?;
    if manifest.object != id {
        return Err(Error::Verification(format!(
            "the manifest served for object {id} is the manifest of object {}",
            manifest.object
        )));
    }
    Ok(manifest)
}

/// Checks the downloaded bytes against the manifest.
pub fn check(manifest: &Manifest, fetched: &Fetched) -> Result<(), Error> {
    let mut mismatches = Vec::new();
    if fetched.size != manifest.size {
        mismatches.push(format!(
            "{} bytes arrived, the manifest says {}",
            fetched.size, manifest.size
        ));
    }
    let sha256 = hex::encode(fetched.sha256);
    if sha256 != manifest.sha256 {
        mismatches.push(format!(
            "their SHA-256 is {sha256}, the manifest says {}",
            manifest.sha256
        ));
    }
    if mismatches.is_empty() {
        return Ok(());
    }
    Err(Error::Verification(format!(
        "object {}: {}",
        manifest.object,
        mismatches.join("; ")
    )))
}

/// The `.part` file once it holds the whole object.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub size: u64,
    pub sha256: [u8; 32],
    /// Bytes an earlier run had already fetched.
    pub resumed_from: u64,
}

/// Fetches the object into `part`, continuing what is there, retrying
/// (and continuing again) after a failure worth retrying.
pub async fn fetch(
    client: &Client,
    target: &Target,
    info: &ObjectInfo,
    part: &Path,
    progress: Progress<'_>,
) -> Result<Fetched, Error> {
    let mut failures = 0;
    let mut first_resume = None;
    loop {
        match fetch_once(client, target, info, part, progress).await {
            Ok(mut fetched) => {
                fetched.resumed_from = first_resume.unwrap_or(fetched.resumed_from);
                return Ok(fetched);
            }
            Err((err, resumed_from)) => {
                first_resume.get_or_insert(resumed_from);
                if !err.is_transient() {
                    return Err(err);
                }
                failures += 1;
                let Some(delay) = client.retry().delay(failures, err.retry_after()) else {
                    return Err(err);
                };
                tracing::debug!(error = %err, ?delay, "retrying the download");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One GET. On failure also says where it had resumed from.
async fn fetch_once(
    client: &Client,
    target: &Target,
    info: &ObjectInfo,
    part: &Path,
    progress: Progress<'_>,
) -> Result<Fetched, (Error, u64)> {
    let mut have = match tokio::fs::metadata(part).await {
        Ok(metadata) => metadata.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err((Error::io(part)(err), 0)),
    };
    if have > info.length {
        // Not a prefix of this object: start again.
        have = 0;
    }
    if have == info.length {
        let (sha256, size) = write_part(part, have, None).await.map_err(|e| (e, have))?;
        progress(size);
        return Ok(Fetched {
            size,
            sha256,
            resumed_from: have,
        });
    }
    let response = get(client, target, info, have)
        .await
        .map_err(|e| (e, have))?;
    let from = match response.status() {
        StatusCode::PARTIAL_CONTENT => have,
        // The server sent it all (the validator changed, or it ignored the
        // range): the part starts over.
        _ => 0,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
    let writer = write_part(part, from, Some(rx));
    let reader = stream_body(target, response, tx, from, progress);
    let (written, streamed) = tokio::join!(writer, reader);
    let (sha256, size) = written.map_err(|e| (e, from))?;
    streamed.map_err(|e| (e, from))?;
    if size != info.length {
        let reason = format!("the body ended at byte {size} of {}", info.length);
        return Err((
            Error::Protocol {
                what: format!("GET {}", target.object),
                reason,
            },
            from,
        ));
    }
    Ok(Fetched {
        size,
        sha256,
        resumed_from: from,
    })
}

async fn get(
    client: &Client,
    target: &Target,
    info: &ObjectInfo,
    from: u64,
) -> Result<Response, Error> {
    let what = format!("GET {}", target.object);
    let mut request = target.request(client, Method::GET, &target.object).await?;
    if from > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
        if let Some(etag) = &info.etag {
            request = request.header(reqwest::header::IF_RANGE, etag);
        }
    }
    let response = client.send(&what, request).await?;
    if response.status() == StatusCode::PARTIAL_CONTENT {
        let starts_at_from = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("bytes {from}-")));
        if !starts_at_from {
            return Err(Error::Protocol {
                what,
                reason: format!("a partial answer that does not start at byte {from}"),
            });
        }
    }
    Ok(response)
}

/// Passes the body's chunks to the writer. Ends when the body does, when
/// it breaks off (a transient error: the part keeps what arrived) or when
/// the writer stops taking them (its own error says why).
async fn stream_body(
    target: &Target,
    mut response: Response,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    from: u64,
    progress: Progress<'_>,
) -> Result<(), Error> {
    let mut total = from;
    progress(total);
    loop {
        let chunk = response.chunk().await.map_err(|source| Error::Transport {
            what: format!("reading {}", target.object),
            source,
        })?;
        let Some(chunk) = chunk else {
            return Ok(());
        };
        total += chunk.len() as u64;
        if tx.send(chunk).await.is_err() {
            return Ok(());
        }
        progress(total);
    }
}

/// On a blocking thread: keeps the first `keep` bytes of `path` (hashing
/// them), then appends what `rx` brings (hashing it), then fsyncs. Returns
/// the SHA-256 and length of the whole file.
async fn write_part(
    path: &Path,
    keep: u64,
    rx: Option<tokio::sync::mpsc::Receiver<Bytes>>,
) -> Result<([u8; 32], u64), Error> {
    let owned = path.to_path_buf();
    let written = tokio::task::spawn_blocking(move || write_blocking(&owned, keep, rx)).await;
    joined(written)?.map_err(Error::io(path))
}

fn write_blocking(
    path: &Path,
    keep: u64,
    rx: Option<tokio::sync::mpsc::Receiver<Bytes>>,
) -> std::io::Result<([u8; 32], u64)> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    file.set_len(keep)?;
    let mut hasher = Sha256::new();
    hash_prefix(&mut file, keep, &mut hasher)?;
    file.seek(SeekFrom::Start(keep))?;
    let mut length = keep;
    if let Some(mut rx) = rx {
        while let Some(chunk) = rx.blocking_recv() {
            file.write_all(&chunk)?;
            hasher.update(&chunk);
            length += chunk.len() as u64;
        }
    }
    file.sync_all()?;
    Ok((hasher.finish(), length))
}

fn hash_prefix(file: &mut File, length: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = file.take(length);
    let mut buffer = vec![0u8; HASH_BUFFER];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..n]);
    }
}

/// The file name in a `Content-Disposition` value (`filename*` preferred),
/// reduced to a harmless base name: no directories, no control
/// characters, no leading dots, at most `MAX_NAME` characters.
pub fn disposition_filename(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for param in value.split(';').map(str::trim) {
        if let Some(encoded) = param.strip_prefix("filename*=") {
            let encoded = encoded.split_once("''").map_or(encoded, |(_, rest)| rest);
            extended = percent_decode_str(encoded)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned());
        } else if let Some(quoted) = param.strip_prefix("filename=") {
            plain = Some(quoted.trim_matches('"').to_owned());
        }
    }
    extended
        .or(plain)
        .map(|name| sanitize(&name))
        .filter(|name| !name.is_empty())
}

/// A base name that is safe to create in the current directory.
pub fn sanitize(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    cleaned.trim().trim_start_matches('.').trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_content_disposition_are_made_harmless() {
        assert_eq!(
            disposition_filename(
                "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
            )
            .as_deref(),
            Some("résumé.pdf")
        );
        assert_eq!(
            disposition_filename("attachment; filename=\"notes.txt\"").as_deref(),
            Some("notes.txt")
        );
        assert_eq!(
            disposition_filename("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd").as_deref(),
            Some("passwd")
        );
        assert_eq!(disposition_filename("attachment; filename=\"..\""), None);
        assert_eq!(disposition_filename("attachment"), None);
        assert_eq!(sanitize(".bashrc"), "bashrc");
        assert_eq!(sanitize("a\r\nb"), "ab");
    }

    #[test]
    fn a_part_is_kept_up_to_its_prefix_and_hashed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.part");
        std::fs::write(&path, b"hello, stale tail").unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let writer = std::thread::spawn({
            let path = path.clone();
            move || write_blocking(&path, 5, Some(rx))
        });
        tx.blocking_send(Bytes::from_static(b" world")).unwrap();
        drop(tx);
        let (sha256, length) = writer.join().unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        assert_eq!(length, 11);
        assert_eq!(sha256, crate::crypto::sha256(b"hello world"));
    }
}

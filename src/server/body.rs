//! Request bodies as the pipeline wants them: data frames, plus the tus
//! checksum if it arrives as a trailer. Never collects a body.

use futures_util::stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::ingest::{BodyChunk, BodyError, BodyStream};
use crate::tus::{self, parse};

pub fn chunks(body: Incoming) -> BodyStream {
    Box::pin(stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        loop {
            let frame = match body.frame().await? {
                Ok(frame) => frame,
                Err(err) => return Some((Err(BodyError::Disconnected(err.to_string())), None)),
            };
            let frame = match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => return Some((Ok(BodyChunk::Data(data)), Some(body))),
                Err(frame) => frame,
            };
            if let Ok(trailers) = frame.into_trailers()
                && trailers.contains_key("upload-checksum")
            {
                let item = parse::parse_trailer_checksum(&trailers)
                    .map(|c| BodyChunk::TrailerChecksum(tus::chunk_checksum(&c)))
                    .map_err(|e| BodyError::BadTrailer(e.to_string()));
                return Some((item, Some(body)));
            }
        }
    }))
}

/// A body for requests that have none (OPTIONS, HEAD, DELETE).
pub fn empty() -> BodyStream {
    Box::pin(stream::empty())
}

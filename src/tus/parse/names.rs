//! The header names the parser reads, in their canonical spelling. Lookups in
//! a `HeaderMap` by `&str` are case-insensitive, and error messages quote
//! these spellings, so one constant serves both.

pub const TUS_RESUMABLE: &str = "Tus-Resumable";
pub const UPLOAD_LENGTH: &str = "Upload-Length";
pub const UPLOAD_OFFSET: &str = "Upload-Offset";
pub const UPLOAD_DEFER_LENGTH: &str = "Upload-Defer-Length";
pub const UPLOAD_METADATA: &str = "Upload-Metadata";
pub const UPLOAD_CHECKSUM: &str = "Upload-Checksum";
pub const UPLOAD_CONCAT: &str = "Upload-Concat";
pub const X_HTTP_METHOD_OVERRIDE: &str = "X-HTTP-Method-Override";
pub const CONTENT_LENGTH: &str = "Content-Length";
pub const CONTENT_TYPE: &str = "Content-Type";
pub const TRAILER: &str = "Trailer";
pub const TRANSFER_ENCODING: &str = "Transfer-Encoding";

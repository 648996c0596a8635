//! Whole requests, read the way the protocol describes them.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;

use super::*;

const ID: &str = "0123456789abcdef0123456789abcdef";
const OTHER: &str = "fedcba9876543210fedcba9876543210";
const SHA1_OF_HELLO: &str = "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=";
const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
const OCTETS: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

fn id(text: &str) -> UploadId {
    text.parse().expect("test id")
}

fn upload() -> Target {
    Target::Upload(id(ID))
}

/// Headers in order, repeats appended rather than replaced.
fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for &(name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

fn request(
    method: Method,
    target: Target,
    pairs: &[(&str, &str)],
) -> Result<TusRequest, ParseError> {
    parse(&method, &target, &headers(pairs))
}

fn parse_create(pairs: &[(&str, &str)]) -> Result<CreateRequest, ParseError> {
    match request(Method::POST, Target::Collection, pairs)? {
        TusRequest::Create(create) => Ok(create),
        other => panic!("expected a creation, got {other:?}"),
    }
}

fn parse_patch(pairs: &[(&str, &str)]) -> Result<PatchRequest, ParseError> {
    match request(Method::PATCH, upload(), pairs)? {
        TusRequest::Patch(patch) => Ok(patch),
        other => panic!("expected a PATCH, got {other:?}"),
    }
}

fn length_error(header: &'static str) -> Result<CreateRequest, ParseError> {
    Err(ParseError::InvalidNumber { header })
}

const MALFORMED_NUMBERS: [&str; 10] = [
    "-1",
    "+5",
    "1e3",
    " 5",
    "5 ",
    "18446744073709551616",
    "0x10",
    "",
    "5.0",
    "1_000",
];

mod core {
    use super::*;

    #[test]
    fn options_needs_no_tus_resumable_on_either_target() {
        for target in [Target::Collection, upload()] {
            assert_eq!(
                request(Method::OPTIONS, target, &[]),
                Ok(TusRequest::Options)
            );
            assert_eq!(
                request(
                    Method::OPTIONS,
                    target,
                    &[("Tus-Resumable", "0.2.2"), ("Upload-Length", "-1")]
                ),
                Ok(TusRequest::Options)
            );
        }
    }

    #[test]
    fn every_other_request_needs_tus_resumable() {
        for (method, target) in [
            (Method::POST, Target::Collection),
            (Method::HEAD, upload()),
            (Method::PATCH, upload()),
            (Method::DELETE, upload()),
        ] {
            assert_eq!(
                request(method, target, &[("Upload-Length", "5")]),
                Err(ParseError::MissingTusResumable)
            );
        }
    }

    #[test]
    fn tus_resumable_must_be_exactly_1_0_0() {
        for got in [
            "0.2.2",
            "1.0",
            "1.0.0 ",
            " 1.0.0",
            "1.0.0,0.2.2",
            "",
            "1.0.1",
        ] {
            assert_eq!(
                request(Method::HEAD, upload(), &[("Tus-Resumable", got)]),
                Err(ParseError::UnsupportedVersion { got: got.into() }),
                "{got:?}"
            );
        }
    }

    #[test]
    fn disagreeing_tus_resumable_copies_are_an_unsupported_version() {
        assert_eq!(
            request(Method::HEAD, upload(), &[TUS, ("Tus-Resumable", "0.2.2")]),
            Err(ParseError::UnsupportedVersion {
                got: "1.0.0, 0.2.2".into()
            })
        );
        assert_eq!(
            request(Method::HEAD, upload(), &[TUS, TUS]),
            Ok(TusRequest::Head(id(ID)))
        );
    }

    #[test]
    fn version_is_checked_before_anything_else() {
        let old = ("Tus-Resumable", "0.2.2");
        let unsupported = Err(ParseError::UnsupportedVersion {
            got: "0.2.2".into(),
        });
        assert_eq!(
            request(Method::PATCH, upload(), &[old, ("Upload-Offset", "x")]),
            unsupported
        );
        assert_eq!(
            request(
                Method::POST,
                Target::Collection,
                &[old, ("Upload-Metadata", "k !")]
            ),
            unsupported
        );
        assert_eq!(
            request(
                Method::POST,
                upload(),
                &[old, ("X-HTTP-Method-Override", "GET")]
            ),
            unsupported
        );
        assert_eq!(request(Method::GET, upload(), &[old]), unsupported);
    }

    #[test]
    fn version_in_a_message_is_escaped_and_cut() {
        let long = "9".repeat(10_000);
        let error =
            request(Method::HEAD, upload(), &[("Tus-Resumable", &long)]).expect_err("unsupported");
        let message = error.to_string();
        assert!(message.len() < 200, "{message}");
        let obs_text = HeaderValue::from_bytes(b"1.0.0\xff\t\"").expect("valid header bytes");
        let mut map = HeaderMap::new();
        map.insert("tus-resumable", obs_text);
        let error = parse(&Method::HEAD, &upload(), &map).expect_err("unsupported");
        assert_eq!(
            error.to_string(),
            "unsupported Tus-Resumable version \"1.0.0\\xff\\t\\\"\" (expected 1.0.0)"
        );
    }

    #[test]
    fn head_and_delete_name_the_upload() {
        assert_eq!(
            request(Method::HEAD, upload(), &[TUS]),
            Ok(TusRequest::Head(id(ID)))
        );
        assert_eq!(
            request(Method::DELETE, upload(), &[TUS]),
            Ok(TusRequest::Terminate(id(ID)))
        );
    }

    #[test]
    fn methods_must_suit_the_target() {
        let extension = Method::from_bytes(b"BREW").expect("method");
        for (method, target) in [
            (Method::PATCH, Target::Collection),
            (Method::HEAD, Target::Collection),
            (Method::DELETE, Target::Collection),
            (Method::GET, Target::Collection),
            (Method::POST, upload()),
            (Method::GET, upload()),
            (Method::PUT, upload()),
            (extension.clone(), upload()),
        ] {
            let name = method.to_string();
            assert_eq!(
                request(method, target, &[TUS]),
                Err(ParseError::MethodNotAllowed { method: name })
            );
        }
    }

    #[test]
    fn advertised_values() {
        assert_eq!(TUS_VERSION, "1.0.0");
        assert_eq!(
            extensions(),
            "creation,creation-with-upload,creation-defer-length,termination,expiration,\
             checksum,checksum-trailer,concatenation,concatenation-unfinished"
        );
        assert_eq!(checksum_algorithms(), "sha1,sha256,md5");
    }
}

mod method_override {
    use super::*;

    const OVERRIDE_PATCH: (&str, &str) = ("X-HTTP-Method-Override", "PATCH");

    #[test]
    fn post_overridden_to_patch_is_a_patch() {
        let patch = request(
            Method::POST,
            upload(),
            &[TUS, OVERRIDE_PATCH, OCTETS, ("Upload-Offset", "5")],
        );
        assert!(matches!(
            patch,
            Ok(TusRequest::Patch(PatchRequest { offset: 5, .. }))
        ));
    }

    #[test]
    fn post_overridden_to_delete_or_head() {
        let delete = ("X-HTTP-Method-Override", "DELETE");
        let head = ("X-HTTP-Method-Override", "HEAD");
        assert_eq!(
            request(Method::POST, upload(), &[TUS, delete]),
            Ok(TusRequest::Terminate(id(ID)))
        );
        assert_eq!(
            request(Method::POST, upload(), &[TUS, head]),
            Ok(TusRequest::Head(id(ID)))
        );
    }

    #[test]
    fn override_to_another_method_is_refused() {
        for wanted in ["GET", "POST", "OPTIONS", "PUT", "patch"] {
            assert_eq!(
                request(
                    Method::POST,
                    upload(),
                    &[TUS, ("X-HTTP-Method-Override", wanted)]
                ),
                Err(ParseError::InvalidMethodOverride),
                "{wanted:?}"
            );
        }
    }

    /// Documented choice: on anything but POST the header is ignored, so the
    /// real method decides (and GET is not a tus method).
    #[test]
    fn override_on_get_is_ignored() {
        assert_eq!(
            request(
                Method::GET,
                upload(),
                &[TUS, OVERRIDE_PATCH, OCTETS, ("Upload-Offset", "0")]
            ),
            Err(ParseError::MethodNotAllowed {
                method: "GET".into()
            })
        );
        assert_eq!(
            request(
                Method::HEAD,
                upload(),
                &[TUS, ("X-HTTP-Method-Override", "DELETE")]
            ),
            Ok(TusRequest::Head(id(ID)))
        );
    }

    #[test]
    fn overridden_method_must_suit_the_target() {
        assert_eq!(
            request(Method::POST, Target::Collection, &[TUS, OVERRIDE_PATCH]),
            Err(ParseError::MethodNotAllowed {
                method: "PATCH".into()
            })
        );
    }
}

mod creation {
    use super::*;

    #[test]
    fn known_length() {
        assert_eq!(
            parse_create(&[TUS, ("Upload-Length", "100")]),
            Ok(CreateRequest {
                length: Some(Length::Known(100)),
                metadata: Metadata::default(),
                concat: Concat::None,
                body: None,
            })
        );
    }

    #[test]
    fn zero_and_maximal_lengths() {
        let length = |value| parse_create(&[TUS, ("Upload-Length", value)]).map(|c| c.length);
        assert_eq!(length("0"), Ok(Some(Length::Known(0))));
        assert_eq!(length("00042"), Ok(Some(Length::Known(42))));
        assert_eq!(
            length("18446744073709551615"),
            Ok(Some(Length::Known(u64::MAX)))
        );
    }

    #[test]
    fn deferred_length() {
        let create = parse_create(&[TUS, ("Upload-Defer-Length", "1")]);
        assert_eq!(create.map(|c| c.length), Ok(Some(Length::Deferred)));
    }

    #[test]
    fn defer_length_must_be_1() {
        for bad in ["0", "2", "true", "01", " 1", ""] {
            assert_eq!(
                parse_create(&[TUS, ("Upload-Defer-Length", bad)]),
                Err(ParseError::InvalidDeferLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn length_and_defer_length_exclude_each_other() {
        assert_eq!(
            parse_create(&[TUS, ("Upload-Length", "5"), ("Upload-Defer-Length", "1")]),
            Err(ParseError::LengthAndDeferBoth)
        );
    }

    #[test]
    fn one_of_them_is_required() {
        assert_eq!(parse_create(&[TUS]), Err(ParseError::MissingLength));
        assert_eq!(
            parse_create(&[TUS, ("Upload-Concat", "partial")]),
            Err(ParseError::MissingLength)
        );
    }

    #[test]
    fn malformed_upload_length() {
        for bad in MALFORMED_NUMBERS {
            assert_eq!(
                parse_create(&[TUS, ("Upload-Length", bad)]),
                length_error("Upload-Length"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn repeated_upload_length() {
        let twice = parse_create(&[TUS, ("Upload-Length", "5"), ("Upload-Length", "5")]);
        assert_eq!(twice.map(|c| c.length), Ok(Some(Length::Known(5))));
        assert_eq!(
            parse_create(&[TUS, ("Upload-Length", "5"), ("Upload-Length", "6")]),
            length_error("Upload-Length")
        );
    }

    #[test]
    fn metadata_with_and_without_values() {
        let create = parse_create(&[
            TUS,
            ("Upload-Length", "1"),
            (
                "Upload-Metadata",
                "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
            ),
        ])
        .expect("valid");
        assert_eq!(
            create.metadata.get_str("filename"),
            Some("world_domination_plan.pdf")
        );
        assert_eq!(create.metadata.get("is_confidential"), Some(&b""[..]));
        assert_eq!(
            create.metadata.encode(),
            "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"
        );
    }

    #[test]
    fn empty_metadata_header_is_empty_metadata() {
        for blank in ["", " "] {
            let create = parse_create(&[TUS, ("Upload-Length", "1"), ("Upload-Metadata", blank)]);
            assert_eq!(create.map(|c| c.metadata.is_empty()), Ok(true), "{blank:?}");
        }
    }

    #[test]
    fn bad_metadata() {
        for (header, reason) in [
            ("name !!!!", "value of key \"name\" is not base64"),
            ("name YQ=x", "value of key \"name\" is not base64"),
            ("k YQ==,k Yg==", "duplicate metadata key \"k\""),
            ("a,,b", "empty pair"),
        ] {
            assert_eq!(
                parse_create(&[TUS, ("Upload-Length", "1"), ("Upload-Metadata", header)]),
                Err(ParseError::InvalidMetadata(reason.into())),
                "{header:?}"
            );
        }
    }

    #[test]
    fn disagreeing_metadata_copies() {
        assert!(matches!(
            parse_create(&[
                TUS,
                ("Upload-Length", "1"),
                ("Upload-Metadata", "a YQ=="),
                ("Upload-Metadata", "b Yg==")
            ]),
            Err(ParseError::InvalidMetadata(_))
        ));
    }
}

mod creation_with_upload {
    use super::*;

    fn body(pairs: &[(&str, &str)]) -> Result<Option<BodyInfo>, ParseError> {
        let mut all = vec![TUS, ("Upload-Length", "10")];
        all.extend_from_slice(pairs);
        parse_create(&all).map(|create| create.body)
    }

    #[test]
    fn tus_media_type_makes_a_body() {
        assert_eq!(
            body(&[OCTETS, ("Content-Length", "5")]),
            Ok(Some(BodyInfo {
                content_length: Some(5),
                checksum: ChecksumSpec::None
            }))
        );
    }

    #[test]
    fn streamed_body_has_no_length() {
        assert_eq!(
            body(&[OCTETS, ("Transfer-Encoding", "chunked")]),
            Ok(Some(BodyInfo {
                content_length: None,
                checksum: ChecksumSpec::None
            }))
        );
    }

    #[test]
    fn body_may_carry_a_checksum_or_announce_one() {
        let with_header = body(&[
            OCTETS,
            ("Content-Length", "5"),
            ("Upload-Checksum", SHA1_OF_HELLO),
        ]);
        assert!(matches!(
            with_header,
            Ok(Some(BodyInfo {
                checksum: ChecksumSpec::Header(Checksum {
                    algorithm: ChecksumAlgorithm::Sha1,
                    ..
                }),
                ..
            }))
        ));
        let with_trailer = body(&[OCTETS, ("Trailer", "Upload-Checksum")]);
        assert!(matches!(
            with_trailer,
            Ok(Some(BodyInfo {
                checksum: ChecksumSpec::Trailer,
                ..
            }))
        ));
    }

    #[test]
    fn no_body_without_content_type_or_with_zero_length() {
        assert_eq!(body(&[]), Ok(None));
        assert_eq!(body(&[("Content-Length", "5")]), Ok(None));
        assert_eq!(
            body(&[("Content-Type", ""), ("Content-Length", "5")]),
            Ok(None)
        );
        assert_eq!(body(&[OCTETS, ("Content-Length", "0")]), Ok(None));
        assert_eq!(
            body(&[("Content-Type", "text/plain"), ("Content-Length", "0")]),
            Ok(None)
        );
        assert_eq!(body(&[("Content-Type", "text/plain")]), Ok(None));
    }

    #[test]
    fn body_under_another_media_type_is_refused() {
        for extra in [("Content-Length", "5"), ("Transfer-Encoding", "chunked")] {
            assert_eq!(
                body(&[("Content-Type", "application/octet-stream"), extra]),
                Err(ParseError::UnsupportedContentType)
            );
        }
    }

    #[test]
    fn content_length_must_be_a_number_and_agree_with_itself() {
        assert_eq!(
            body(&[OCTETS, ("Content-Length", "5"), ("Content-Length", "6")]),
            Err(ParseError::ConflictingLength)
        );
        assert_eq!(
            body(&[OCTETS, ("Content-Length", "5"), ("Content-Length", "5")])
                .map(|b| b.and_then(|b| b.content_length)),
            Ok(Some(5))
        );
        assert_eq!(
            body(&[OCTETS, ("Content-Length", "5, 5")]),
            Err(ParseError::InvalidNumber {
                header: "Content-Length"
            })
        );
    }

    #[test]
    fn checksum_errors_on_the_body() {
        assert_eq!(
            body(&[
                OCTETS,
                ("Upload-Checksum", SHA1_OF_HELLO),
                ("Trailer", "Upload-Checksum")
            ]),
            Err(ParseError::ChecksumHeaderAndTrailer)
        );
        assert_eq!(
            body(&[OCTETS, ("Upload-Checksum", "crc32 AAAAAA==")]),
            Err(ParseError::UnsupportedChecksumAlgorithm {
                got: "crc32".into()
            })
        );
    }
}

mod concatenation {
    use super::*;

    fn final_of(urls: &str) -> String {
        format!("final;{urls}")
    }

    #[test]
    fn partial_upload_has_its_own_length() {
        let create = parse_create(&[TUS, ("Upload-Concat", "partial"), ("Upload-Length", "5")]);
        assert_eq!(
            create.map(|c| (c.concat, c.length)),
            Ok((Concat::Partial, Some(Length::Known(5))))
        );
        let deferred = parse_create(&[
            TUS,
            ("Upload-Concat", "partial"),
            ("Upload-Defer-Length", "1"),
        ]);
        assert_eq!(deferred.map(|c| c.length), Ok(Some(Length::Deferred)));
    }

    #[test]
    fn final_upload_with_paths_and_absolute_urls() {
        let value = final_of(&format!(
            "/files/{ID} https://tus.example.org/files/{OTHER}"
        ));
        let create = parse_create(&[TUS, ("Upload-Concat", &value)]).expect("valid");
        assert_eq!(create.concat, Concat::Final(vec![id(ID), id(OTHER)]));
        assert_eq!(create.length, None);
    }

    #[test]
    fn final_upload_may_not_declare_a_length() {
        let value = final_of(&format!("/files/{ID}"));
        for length in [("Upload-Length", "5"), ("Upload-Defer-Length", "1")] {
            assert!(matches!(
                parse_create(&[TUS, ("Upload-Concat", &value), length]),
                Err(ParseError::InvalidConcat(reason)) if reason.contains("Upload-Length")
            ));
        }
    }

    #[test]
    fn final_upload_may_not_carry_a_body() {
        let value = final_of(&format!("/files/{ID}"));
        assert_eq!(
            parse_create(&[
                TUS,
                ("Upload-Concat", &value),
                OCTETS,
                ("Content-Length", "3")
            ]),
            Err(ParseError::InvalidConcat(
                "a final upload may not carry a body".into()
            ))
        );
        let empty = parse_create(&[
            TUS,
            ("Upload-Concat", &value),
            OCTETS,
            ("Content-Length", "0"),
        ]);
        assert_eq!(empty.map(|c| c.body), Ok(None));
    }

    #[test]
    fn final_upload_refuses_dot_segments_and_encoded_dots() {
        for urls in [
            format!("/files/../files/{ID}"),
            format!("/files/%2e%2e/{ID}"),
            format!("http://host/files/%2E%2E/{ID}"),
            format!("/files/{ID}/.."),
        ] {
            assert!(
                matches!(
                    parse_create(&[TUS, ("Upload-Concat", &final_of(&urls))]),
                    Err(ParseError::InvalidConcat(_))
                ),
                "{urls:?}"
            );
        }
    }

    #[test]
    fn final_upload_refuses_empty_lists_bad_ids_and_duplicates() {
        for value in [
            "final;".to_owned(),
            final_of("/files/not-an-id"),
            final_of(&format!("/files/{ID} /files/{ID}")),
            "merged".to_owned(),
        ] {
            assert!(
                matches!(
                    parse_create(&[TUS, ("Upload-Concat", &value)]),
                    Err(ParseError::InvalidConcat(_))
                ),
                "{value:?}"
            );
        }
    }
}

mod patch {
    use super::*;

    #[test]
    fn a_plain_patch() {
        assert_eq!(
            parse_patch(&[
                TUS,
                ("Upload-Offset", "5"),
                OCTETS,
                ("Content-Length", "10")
            ]),
            Ok(PatchRequest {
                id: id(ID),
                offset: 5,
                length: None,
                body: BodyInfo {
                    content_length: Some(10),
                    checksum: ChecksumSpec::None
                },
            })
        );
    }

    #[test]
    fn upload_offset_is_required() {
        assert_eq!(
            parse_patch(&[TUS, OCTETS]),
            Err(ParseError::MissingHeader("Upload-Offset"))
        );
    }

    #[test]
    fn malformed_upload_offset() {
        for bad in MALFORMED_NUMBERS {
            assert_eq!(
                parse_patch(&[TUS, ("Upload-Offset", bad), OCTETS]),
                Err(ParseError::InvalidNumber {
                    header: "Upload-Offset"
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn content_type_must_be_the_tus_media_type() {
        for content_type in [
            "application/offset+octet-stream",
            "APPLICATION/Offset+Octet-Stream",
            "application/offset+octet-stream; charset=binary",
        ] {
            let patch = parse_patch(&[TUS, ("Upload-Offset", "0"), ("Content-Type", content_type)]);
            assert!(patch.is_ok(), "{content_type:?}");
        }
        for content_type in ["application/octet-stream", "", "text/plain"] {
            assert_eq!(
                parse_patch(&[TUS, ("Upload-Offset", "0"), ("Content-Type", content_type)]),
                Err(ParseError::UnsupportedContentType),
                "{content_type:?}"
            );
        }
        assert_eq!(
            parse_patch(&[TUS, ("Upload-Offset", "0")]),
            Err(ParseError::UnsupportedContentType)
        );
    }

    #[test]
    fn upload_length_fixes_a_deferred_length() {
        let patch = parse_patch(&[TUS, ("Upload-Offset", "0"), ("Upload-Length", "99"), OCTETS]);
        assert_eq!(patch.map(|p| p.length), Ok(Some(99)));
        assert_eq!(
            parse_patch(&[TUS, ("Upload-Offset", "0"), ("Upload-Length", "-1"), OCTETS]),
            Err(ParseError::InvalidNumber {
                header: "Upload-Length"
            })
        );
    }

    #[test]
    fn checksum_header() {
        let patch = parse_patch(&[
            TUS,
            ("Upload-Offset", "0"),
            OCTETS,
            ("Upload-Checksum", SHA1_OF_HELLO),
        ])
        .expect("valid");
        let ChecksumSpec::Header(checksum) = patch.body.checksum else {
            panic!("expected a checksum header");
        };
        assert_eq!(checksum.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(checksum.digest.len(), 20);
    }

    #[test]
    fn checksum_trailer_announcement() {
        let patch = parse_patch(&[
            TUS,
            ("Upload-Offset", "0"),
            OCTETS,
            ("Transfer-Encoding", "chunked"),
            ("Trailer", "Upload-Checksum"),
        ]);
        assert_eq!(
            patch.map(|p| p.body),
            Ok(BodyInfo {
                content_length: None,
                checksum: ChecksumSpec::Trailer
            })
        );
        let trailers = headers(&[("Upload-Checksum", SHA1_OF_HELLO)]);
        assert_eq!(
            parse_trailer_checksum(&trailers).map(|c| c.algorithm),
            Ok(ChecksumAlgorithm::Sha1)
        );
    }

    #[test]
    fn checksum_faults() {
        let base = [TUS, ("Upload-Offset", "0"), OCTETS];
        let with = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            parse_patch(&all)
        };
        assert_eq!(
            with(&[
                ("Upload-Checksum", SHA1_OF_HELLO),
                ("Trailer", "upload-checksum")
            ]),
            Err(ParseError::ChecksumHeaderAndTrailer)
        );
        assert_eq!(
            with(&[("Upload-Checksum", "sha256 AAAA")]),
            Err(ParseError::InvalidChecksum(
                "sha256 digest must be 32 bytes, got 3".into()
            ))
        );
        assert!(matches!(
            with(&[("Upload-Checksum", "sha1 ***")]),
            Err(ParseError::InvalidChecksum(_))
        ));
        assert_eq!(
            with(&[("Upload-Checksum", "sha512 AAAA")]),
            Err(ParseError::UnsupportedChecksumAlgorithm {
                got: "sha512".into()
            })
        );
    }
}

/// The variant name of an error, as `Debug` spells it.
fn variant(error: &ParseError) -> String {
    format!("{error:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// One request for each fault, so that no variant goes unreached.
#[test]
fn every_variant_is_reachable() {
    let final_part = format!("final;/files/{ID}");
    let offset = ("Upload-Offset", "0");
    let cases = [
        ("MissingTusResumable", request(Method::HEAD, upload(), &[])),
        (
            "UnsupportedVersion",
            request(Method::HEAD, upload(), &[("Tus-Resumable", "2")]),
        ),
        (
            "MissingHeader",
            parse_patch(&[TUS, OCTETS]).map(TusRequest::Patch),
        ),
        (
            "InvalidNumber",
            parse_create(&[TUS, ("Upload-Length", "x")]).map(TusRequest::Create),
        ),
        (
            "ConflictingLength",
            parse_patch(&[
                TUS,
                offset,
                OCTETS,
                ("Content-Length", "1"),
                ("Content-Length", "2"),
            ])
            .map(TusRequest::Patch),
        ),
        (
            "LengthAndDeferBoth",
            parse_create(&[TUS, ("Upload-Length", "1"), ("Upload-Defer-Length", "1")])
                .map(TusRequest::Create),
        ),
        (
            "InvalidDeferLength",
            parse_create(&[TUS, ("Upload-Defer-Length", "2")]).map(TusRequest::Create),
        ),
        (
            "MissingLength",
            parse_create(&[TUS]).map(TusRequest::Create),
        ),
        (
            "InvalidMetadata",
            parse_create(&[TUS, ("Upload-Length", "1"), ("Upload-Metadata", "a b c")])
                .map(TusRequest::Create),
        ),
        (
            "UnsupportedContentType",
            parse_patch(&[TUS, offset]).map(TusRequest::Patch),
        ),
        (
            "InvalidChecksum",
            parse_patch(&[TUS, offset, OCTETS, ("Upload-Checksum", "md5 x")])
                .map(TusRequest::Patch),
        ),
        (
            "UnsupportedChecksumAlgorithm",
            parse_patch(&[TUS, offset, OCTETS, ("Upload-Checksum", "md4 x")])
                .map(TusRequest::Patch),
        ),
        (
            "ChecksumHeaderAndTrailer",
            parse_patch(&[
                TUS,
                offset,
                OCTETS,
                ("Upload-Checksum", SHA1_OF_HELLO),
                ("Trailer", "Upload-Checksum"),
            ])
            .map(TusRequest::Patch),
        ),
        (
            "InvalidConcat",
            parse_create(&[TUS, ("Upload-Concat", &final_part), ("Upload-Length", "1")])
                .map(TusRequest::Create),
        ),
        (
            "MethodNotAllowed",
            request(Method::GET, Target::Collection, &[TUS]),
        ),
        (
            "InvalidMethodOverride",
            request(
                Method::POST,
                upload(),
                &[TUS, ("X-HTTP-Method-Override", "PUT")],
            ),
        ),
    ];
    for (expected, result) in cases {
        let error = result.expect_err(expected);
        assert_eq!(variant(&error), expected, "{error:?}");
    }
}

/// The headers the parser reads, for fuzzing.
const TUS_HEADERS: [&str; 12] = [
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-defer-length",
    "upload-metadata",
    "upload-checksum",
    "upload-concat",
    "x-http-method-override",
    "content-length",
    "content-type",
    "trailer",
    "transfer-encoding",
];

/// Header values: mostly near-misses of valid ones, some arbitrary bytes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"1.0.0".to_vec()),
        Just(b"application/offset+octet-stream".to_vec()),
        Just(b"Upload-Checksum".to_vec()),
        Just(b"partial".to_vec()),
        "[0-9]{0,22}".prop_map(String::into_bytes),
        "[a-z0-9]{1,8}( [A-Za-z0-9+/=]{0,60})?(,[a-z]{1,4}( [A-Za-z0-9+/=]{0,8})?){0,4}"
            .prop_map(String::into_bytes),
        "final;( ?(https?://[a-z.]{0,8})?/[a-z0-9./%]{0,40}){0,4}".prop_map(String::into_bytes),
        "(sha1|sha256|md5|crc) [A-Za-z0-9+/=]{0,48}".prop_map(String::into_bytes),
        "(PATCH|DELETE|HEAD|GET|POST|1)".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::OPTIONS),
        Just(Method::POST),
        Just(Method::HEAD),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::GET),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::Collection),
        any::<[u8; 16]>().prop_map(|bytes| Target::Upload(UploadId::from_bytes(bytes)))
    ]
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    let entry = (0..TUS_HEADERS.len(), header_value());
    (proptest::collection::vec(entry, 0..14), any::<bool>()).prop_map(|(entries, speak_tus)| {
        let mut map = HeaderMap::new();
        if speak_tus {
            map.append("tus-resumable", HeaderValue::from_static("1.0.0"));
        }
        for (index, raw) in entries {
            if let Ok(value) = HeaderValue::from_bytes(&raw) {
                map.append(TUS_HEADERS[index], value);
            }
        }
        map
    })
}

fn assert_presentable(error: &ParseError) {
    let message = error.to_string();
    assert!(message.len() <= 400, "{message}");
    assert!(!message.chars().any(char::is_control), "{message:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics(method in method(), target in target(), headers in header_map()) {
        if let Err(error) = parse(&method, &target, &headers) {
            assert_presentable(&error);
        }
    }

    #[test]
    fn trailer_parse_never_panics(raw in header_value()) {
        if let Ok(value) = HeaderValue::from_bytes(&raw) {
            let mut trailers = HeaderMap::new();
            trailers.insert("upload-checksum", value);
            if let Err(error) = parse_trailer_checksum(&trailers) {
                assert_presentable(&error);
            }
        }
    }

    #[test]
    fn metadata_encode_parse_round_trips(
        pairs in proptest::collection::vec(
            ("[!-+\\--~]{1,12}", proptest::option::of(proptest::collection::vec(any::<u8>(), 1..40))),
            0..12,
        )
    ) {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<_> = pairs.into_iter().filter(|(key, _)| seen.insert(key.clone())).collect();
        let metadata = Metadata::from_pairs(unique.clone()).expect("valid pairs");
        let encoded = metadata.encode();
        prop_assert_eq!(encoded.parse::<Metadata>(), Ok(metadata.clone()));
        let unpadded = encoded
            .split(',')
            .map(|pair| match pair.split_once(' ') {
                Some((key, value)) => format!("{key} {}", value.trim_end_matches('=')),
                None => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",");
        prop_assert_eq!(unpadded.parse::<Metadata>(), Ok(metadata.clone()));
        let via_header = parse_create(&[TUS, ("Upload-Length", "0"), ("Upload-Metadata", &encoded)])
            .map(|create| create.metadata);
        prop_assert_eq!(via_header, Ok(metadata.clone()));
        for (key, value) in &unique {
            prop_assert_eq!(metadata.get(key), Some(value.as_deref().unwrap_or_default()));
        }
    }

    #[test]
    fn numbers_round_trip(n in any::<u64>(), zeros in 0usize..4) {
        let text = format!("{}{n}", "0".repeat(zeros));
        let value = HeaderValue::from_str(&text).expect("digits");
        let parsed = parse_u64("Upload-Offset", &value);
        if text.len() <= 20 {
            prop_assert_eq!(parsed, Ok(n));
        } else {
            prop_assert_eq!(parsed, Err(ParseError::InvalidNumber { header: "Upload-Offset" }));
        }
    }

    #[test]
    fn errors_never_echo_long_or_raw_values(raw in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(value) = HeaderValue::from_bytes(&raw) {
            for name in ["tus-resumable", "upload-metadata", "upload-concat", "upload-checksum"] {
                let mut map = headers(&[TUS, ("Upload-Length", "1"), OCTETS]);
                map.insert(name, value.clone());
                if let Err(error) = parse(&Method::POST, &Target::Collection, &map) {
                    assert_presentable(&error);
                }
            }
        }
    }
}

#!/usr/bin/env python3
"""End-to-end test driver: uploads one file to a tus 1.0 server with tuspy.

    .venv/bin/python upload.py --endpoint http://127.0.0.1:PORT/files/ --file PATH
        --chunk-size BYTES --store PATH [--stop-after BYTES] [--metadata key=value]...
        [--header K=V]...

stdout carries one JSON object per line (see ../README.md); diagnostics go to stderr.
Exit codes: 0 success, 1 upload error, 2 usage error (including --parallel N>1, which
tuspy does not support), 3 stopped by --stop-after.
"""

import argparse
import json
import os
import sys


def emit(event):
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def fail(message, status=None, body=None):
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", errors="replace")
    emit({"event": "error", "message": message, "status": status, "body": body})
    sys.exit(1)


def key_value(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got %r" % text)
    return key, value


def non_negative_int(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError("expected a non-negative integer, got %r" % text)
    return int(text)


def positive_int(text):
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % text)
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="upload.py", description="tus upload driver (tuspy)")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--chunk-size", required=True, type=positive_int)
    parser.add_argument("--store", required=True)
    parser.add_argument("--stop-after", type=non_negative_int, default=None)
    parser.add_argument("--metadata", type=key_value, action="append", default=[])
    parser.add_argument("--header", type=key_value, action="append", default=[])
    parser.add_argument("--parallel", type=positive_int, default=1)
    args = parser.parse_args(argv)  # exits 2 on usage errors
    if args.parallel > 1:
        sys.stderr.write(
            "upload.py: --parallel is not supported: tuspy has no parallel "
            "(concatenation) uploads\n"
        )
        sys.exit(2)
    return args


def main(argv):
    args = parse_args(argv)

    from tusclient.client import TusClient
    from tusclient.exceptions import TusCommunicationError
    from tusclient.fingerprint.fingerprint import Fingerprint
    from tusclient.storage.filestorage import FileStorage

    if not os.path.isfile(args.file):
        fail("--file is not a readable regular file: %s" % args.file)
    size = os.path.getsize(args.file)

    metadata = {"filename": os.path.basename(args.file)}
    metadata.update(dict(args.metadata))
    headers = dict(args.header)

    store_dir = os.path.dirname(os.path.abspath(args.store))
    os.makedirs(store_dir, exist_ok=True)
    storage = FileStorage(args.store)

    # tuspy keys its URL store by a content fingerprint ("size:N--md5:<md5 of the first
    # 64 KiB>") and, when store_url is on, looks the URL up and sends HEAD for the offset
    # inside Uploader.__init__. Look the key up the same way first to report a resume.
    fingerprinter = Fingerprint()
    with open(args.file, "rb") as stream:
        key = fingerprinter.get_fingerprint(stream)
    stored_url = storage.get_item(key)
    if stored_url:
        emit({"event": "resumed", "url": stored_url})

    uploader = None
    try:
        client = TusClient(args.endpoint, headers=headers)
        uploader = client.uploader(
            file_path=args.file,
            chunk_size=args.chunk_size,
            metadata=metadata,
            store_url=True,
            url_storage=storage,
            fingerprinter=fingerprinter,
        )
        if not uploader.url:
            # What Uploader.upload() does first; done here so that the creation is
            # reported, and so that an empty file is still created (upload_chunk would
            # never run for it).
            uploader.set_url(uploader.create_url())
            uploader.offset = 0
            emit({"event": "created", "url": uploader.url})

        while uploader.offset < size:
            try:
                uploader.upload_chunk()
            except (TypeError, ValueError) as err:
                request = uploader.request
                if request is not None and request.response_headers.get("upload-offset") is None:
                    fail(
                        "PATCH response carried no valid Upload-Offset header (%s)" % err,
                        request.status_code,
                        request.response_content,
                    )
                raise
            emit({"event": "chunk", "offset": uploader.offset})
            if (
                args.stop_after is not None
                and args.stop_after <= uploader.offset < size
            ):
                # Stop like a client that lost its connection: the upload and its entry
                # in the URL store stay, so a new process resumes it.
                emit({"event": "stopped", "offset": uploader.offset, "url": uploader.url})
                storage.close()
                sys.exit(3)
    except TusCommunicationError as err:
        fail(str(err), err.status_code, err.response_content)
    except SystemExit:
        raise
    except Exception as err:  # anything else tuspy or requests let through
        fail("%s: %s" % (type(err).__name__, err))

    # tuspy never removes a finished upload from its URL store; do it here, as
    # tus-js-client's removeFingerprintOnSuccess does, so that uploading the same file
    # again with the same store creates a new upload instead of "resuming" a finished one.
    storage.remove_item(key)
    storage.close()
    emit({"event": "success", "url": uploader.url})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env node
// End-to-end test driver: uploads one file to a tus 1.0 server with tus-js-client.
//
//   node upload.mjs --endpoint http://127.0.0.1:PORT/files/ --file PATH --chunk-size BYTES
//                   --store PATH [--stop-after BYTES] [--metadata key=value]...
//                   [--parallel N] [--header K=V]... [--report-header NAME]...
//
// stdout carries one JSON object per line (see ../README.md); diagnostics go to stderr.
// Exit codes: 0 success, 1 upload error, 2 usage error, 3 stopped by --stop-after.

import * as fs from 'node:fs'
import * as path from 'node:path'
import * as tus from 'tus-js-client'

const USAGE =
  'usage: node upload.mjs --endpoint URL --file PATH --chunk-size BYTES --store PATH ' +
  '[--stop-after BYTES] [--metadata key=value]... [--parallel N] [--header K=V]... ' +
  '[--report-header NAME]...'

function usageError(message) {
  process.stderr.write(`upload.mjs: ${message}\n${USAGE}\n`)
  process.exit(2)
}

function parsePositiveInt(name, value, { allowZero = false } = {}) {
  if (!/^\d+$/.test(value ?? '')) usageError(`${name} needs a non-negative integer, got ${JSON.stringify(value)}`)
  const n = Number(value)
  if (!Number.isSafeInteger(n) || (!allowZero && n === 0)) usageError(`${name} out of range: ${value}`)
  return n
}

function parseKeyValue(name, value) {
  const i = (value ?? '').indexOf('=')
  if (i <= 0) usageError(`${name} needs KEY=VALUE, got ${JSON.stringify(value)}`)
  return [value.slice(0, i), value.slice(i + 1)]
}

function parseArgs(argv) {
  const opts = { metadata: [], headers: [], reportHeaders: [], parallel: 1, stopAfter: null }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) usageError(`${arg} needs a value`)
      return argv[++i]
    }
    switch (arg) {
      case '--endpoint': opts.endpoint = next(); break
      case '--file': opts.file = next(); break
      case '--chunk-size': opts.chunkSize = parsePositiveInt(arg, next()); break
      case '--store': opts.store = next(); break
      case '--stop-after': opts.stopAfter = parsePositiveInt(arg, next(), { allowZero: true }); break
      case '--metadata': opts.metadata.push(parseKeyValue(arg, next())); break
      case '--header': opts.headers.push(parseKeyValue(arg, next())); break
      case '--parallel': opts.parallel = parsePositiveInt(arg, next()); break
      case '--report-header': opts.reportHeaders.push(next().toLowerCase()); break
      case '-h':
      case '--help':
        process.stdout.write(`${USAGE}\n`)
        process.exit(0)
        break
      default: usageError(`unknown argument ${JSON.stringify(arg)}`)
    }
  }
  if (!opts.endpoint) usageError('--endpoint is required')
  if (!opts.file) usageError('--file is required')
  if (opts.chunkSize == null) usageError('--chunk-size is required')
  if (!opts.store && opts.parallel === 1) usageError('--store is required (optional only with --parallel N>1)')
  return opts
}

function emit(event) {
  // Writes to pipes and files are synchronous on Linux, so a line is never lost on exit.
  process.stdout.write(`${JSON.stringify(event)}\n`)
}

const opts = parseArgs(process.argv.slice(2))

let fileStat
try {
  fileStat = fs.statSync(opts.file)
} catch (err) {
  emit({ event: 'error', message: `cannot read --file: ${err.message}`, status: null, body: null })
  process.exit(1)
}
if (!fileStat.isFile()) {
  emit({ event: 'error', message: `--file is not a regular file: ${opts.file}`, status: null, body: null })
  process.exit(1)
}

const metadata = { filename: path.basename(opts.file) }
for (const [k, v] of opts.metadata) metadata[k] = v
const headers = {}
for (const [k, v] of opts.headers) headers[k] = v

let urlStorage
if (opts.store) {
  fs.mkdirSync(path.dirname(path.resolve(opts.store)), { recursive: true })
  urlStorage = new tus.FileUrlStorage(opts.store)
}

let finished = false
let stopping = false
let resumedUrl = null
let createdUrl = null
// Total bytes acknowledged by the server. For a single upload this is the upload's
// offset; with --parallel it is the sum of the offsets of the partial uploads (each
// partial upload calls onChunkComplete with its own options object as `this`).
let acknowledged = 0
const partOffsets = new Map()

function finish(code, event) {
  if (finished) return
  finished = true
  emit(event)
  // Let pending work (e.g. tus-js-client removing the fingerprint from the URL store
  // after success, which it does without waiting) drain, then exit naturally. The
  // watchdog is unref'd: it only fires if something keeps the event loop alive.
  process.exitCode = code
  setTimeout(() => {
    process.stderr.write('upload.mjs: event loop did not drain after the final event, forcing exit\n')
    process.exit(code)
  }, 10000).unref()
}

// tus-js-client reads slices of an fs.ReadStream (with a path) straight from the file,
// so the file is never held in memory as a whole, and it fingerprints the file by
// absolute path, size, mtime and endpoint for the URL store.
const source = fs.createReadStream(opts.file)

const upload = new tus.Upload(source, {
  endpoint: opts.endpoint,
  chunkSize: opts.chunkSize,
  metadata,
  headers,
  retryDelays: [0, 200, 500],
  // tus-js-client's own rule (defaultOnShouldRetry, not exported; "online" is always
  // true in Node.js), restated so that every retry is reported with its cause.
  onShouldRetry(err, retryAttempt) {
    const res = err?.originalResponse ?? null
    const status = res ? res.getStatus() : null
    const retry = status == null || status < 400 || status >= 500 || status === 409 || status === 423
    if (retry && !finished) {
      emit({ event: 'retry', attempt: retryAttempt + 1, message: String(err?.message ?? err), status })
    }
    return retry
  },
  parallelUploads: opts.parallel,
  ...(urlStorage
    ? { urlStorage, storeFingerprintForResuming: true, removeFingerprintOnSuccess: true }
    : { storeFingerprintForResuming: false }),

  onUploadUrlAvailable() {
    // Also fires after the HEAD that confirms a resumed upload; only a URL that differs
    // from the resumed one means a new upload resource was created.
    if (upload.url && upload.url !== resumedUrl && upload.url !== createdUrl) {
      createdUrl = upload.url
      emit({ event: 'created', url: upload.url })
    }
  },

  // Only with --report-header: what the client itself received, for headers that
  // tus-js-client does not surface (e.g. a server's verdict on the completing PATCH).
  onAfterResponse(req, res) {
    if (opts.reportHeaders.length === 0 || finished) return
    const headers = {}
    for (const name of opts.reportHeaders) headers[name] = res.getHeader(name) ?? null
    emit({ event: 'response', method: req.getMethod(), status: res.getStatus(), headers })
  },

  onChunkComplete(chunkSize, bytesAccepted, bytesTotal) {
    if (finished || stopping) return
    partOffsets.set(this, bytesAccepted)
    acknowledged = 0
    for (const n of partOffsets.values()) acknowledged += n
    emit({ event: 'chunk', offset: acknowledged })
    if (opts.stopAfter != null && acknowledged >= opts.stopAfter && acknowledged < fileStat.size) {
      // Simulate a client that lost its connection: abort without terminating, so the
      // upload and its entry in the URL store survive for a later process to resume.
      stopping = true
      upload
        .abort(false)
        .catch((err) => process.stderr.write(`upload.mjs: abort failed: ${err}\n`))
        .finally(() => {
          finish(3, { event: 'stopped', offset: acknowledged, url: upload.url ?? resumedUrl })
          source.destroy()
        })
    }
  },

  onSuccess() {
    if (opts.parallel > 1 && upload.url && upload.url !== createdUrl) {
      // With parallelUploads the final (concatenated) upload is created by the last
      // request, and onUploadUrlAvailable is never called for it.
      createdUrl = upload.url
      emit({ event: 'created', url: upload.url })
    }
    finish(0, { event: 'success', url: upload.url })
  },

  onError(err) {
    const res = err?.originalResponse ?? null
    const status = res ? res.getStatus() : null
    const body = res ? res.getBody() ?? null : null
    // Stop any partial uploads that are still running (parallel mode).
    upload.abort(false).catch(() => {})
    source.destroy()
    finish(1, { event: 'error', message: String(err?.message ?? err), status, body })
  },
})

try {
  const previous = await upload.findPreviousUploads()
  if (previous.length > 0) {
    const prev = previous[0]
    resumedUrl = prev.uploadUrl ?? null
    const event = { event: 'resumed', url: resumedUrl }
    if (prev.parallelUploadUrls) event.partial_urls = prev.parallelUploadUrls
    emit(event)
    upload.resumeFromPreviousUpload(prev)
  }
} catch (err) {
  finish(1, { event: 'error', message: `reading URL store failed: ${err.message}`, status: null, body: null })
}

if (!finished) upload.start()

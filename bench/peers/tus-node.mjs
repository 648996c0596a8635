// @tus/server with @tus/file-store on 127.0.0.1:$PORT, storing in $STORE_DIR.
// Started by bench/pipeline.rs when STRONGROOM_BENCH_PEERS=1.
import http from 'node:http'
import { Server } from '@tus/server'
import { FileStore } from '@tus/file-store'

const port = Number(process.env.PORT ?? 1080)
const directory = process.env.STORE_DIR ?? './tus-node-store'

const tus = new Server({
  path: '/files',
  relativeLocation: true,
  datastore: new FileStore({ directory }),
})

http
  .createServer((req, res) => tus.handle(req, res))
  .listen(port, '127.0.0.1', () => console.log(`@tus/server listening on 127.0.0.1:${port}`))

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0))

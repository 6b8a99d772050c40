// Another process on a device database, holding a lock on it until told to let go (a line
// `release` on stdin, or SIGTERM), as an operator's tool or a second program might:
//   exclusive: EXCLUSIVE locking mode and a write, so nobody else can even read the file (what
//              a device finds at open)
//   writer:    a write transaction left open (BEGIN IMMEDIATE), as a long `outpost jobs purge`
//              holds one while the device runs
// Prints `held` once it holds the lock, `released` when it let go.
import Database from 'better-sqlite3'

const [file, mode] = process.argv.slice(2) as [string, 'exclusive' | 'writer']
const db = new Database(file, { timeout: 10_000 })
if (mode === 'exclusive') {
  // In this mode a connection keeps the lock it took until it closes.
  db.pragma('locking_mode = EXCLUSIVE')
  db.exec('BEGIN EXCLUSIVE')
  db.exec('COMMIT')
} else {
  db.exec('BEGIN IMMEDIATE') // the write lock, until released
}
process.stdout.write('held\n')

const release = (): void => {
  if (db.inTransaction) db.exec('COMMIT')
  db.close()
  process.stdout.write('released\n')
  process.exit(0)
}
process.on('SIGTERM', release)
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk: string) => {
  if (chunk.includes('release')) release()
})

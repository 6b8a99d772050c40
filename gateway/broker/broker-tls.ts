import { readFileSync, statSync } from 'node:fs'
import tls from 'node:tls'
import { ErrorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import type { MqttBrokerOptions } from './broker-options.js'

/** A certificate chain or key is a few kB; more is not a PEM file. */
const MAX_PEM_BYTES = 1024 * 1024

function readPem(what: string, file: string): Buffer {
  // A device or a pipe (certFile: /dev/zero, say) would be read without end, the process growing until killed.
  let problem: string | undefined
  try {
    const st = statSync(file)
    problem = !st.isFile() ? 'not a regular file' : st.size > MAX_PEM_BYTES ? `${st.size} bytes, more than a PEM file's ${MAX_PEM_BYTES}` : undefined
  } catch {
    // readFileSync below names what is wrong.
  }
  if (problem !== undefined) throw new OutpostError(ErrorCode.INVALID_CONFIG, `cannot read the TLS ${what} file ${file}: ${problem}`, { details: { file } })
  try {
    return readFileSync(file)
  } catch (err) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `cannot read the TLS ${what} file ${file}: ${errorMessage(err)}`, { cause: err, details: { file } })
  }
}

/** The TLS server's options from the configured files. @throws INVALID_CONFIG */
export function tlsOptions(t: NonNullable<MqttBrokerOptions['tls']>): tls.TlsOptions {
  const options: tls.TlsOptions = { cert: readPem('certificate', t.certFile), key: readPem('key', t.keyFile) }
  if (t.caFile !== undefined) Object.assign(options, { ca: readPem('CA', t.caFile), requestCert: true, rejectUnauthorized: true })
  try {
    // Checked now, so a certificate that does not match its key fails at start, not at the first client.
    tls.createSecureContext(options)
  } catch (err) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `the TLS certificate ${t.certFile} and key ${t.keyFile} cannot be used: ${errorMessage(err)}`, { cause: err })
  }
  return options
}

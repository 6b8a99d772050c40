// better-sqlite3's native addon for a bundle: which file (the host's, or one built for another
// target), and what it is built for, read from the file itself: the Node ABI from the symbol a
// non-N-API addon exports (`node_register_module_v<ABI>`), platform and architecture from its
// executable header (ELF, Mach-O, PE).
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { ErrorCode, OutpostError } from '../runtime/errors.js'

/** The addon's file name in a bundle directory (as build/stubs/better-sqlite3.ts loads it). */
export const ADDON_FILE = 'better_sqlite3.node'

/** What an addon is built for. */
export interface AddonTarget {
  /** process.versions.modules of the Node it was built against. */
  nodeAbi: number
  /** As process.platform: linux, darwin, win32, freebsd. */
  platform: string
  /** As process.arch: x64, arm64, arm, ia32, riscv64, ppc64, s390x. */
  arch: string
}

/** NODE_MODULE_VERSION of each Node major from 18 (Node's abi_version_registry). */
const NODE_MAJOR_OF_ABI: Readonly<Record<number, number>> = { 108: 18, 111: 19, 115: 20, 120: 21, 127: 22, 131: 23, 137: 24, 141: 25, 147: 26, 153: 27 }

/**
 * The Node versions an addon of this ABI loads in, as a semver range (one major: the ABI
 * changes with each), or undefined for an ABI this table does not know.
 */
export function nodeRangeOfAbi(abi: number): string | undefined {
  const major = NODE_MAJOR_OF_ABI[abi]
  return major === undefined ? undefined : `>=${major}.0.0 <${major + 1}.0.0`
}

/** The host's addon: the one better-sqlite3 built or downloaded into node_modules. */
export const hostAddon = (root: string): string => path.join(root, 'node_modules', 'better-sqlite3', 'build', 'Release', ADDON_FILE)

const ELF_MACHINES: Record<number, string> = { 0x03: 'ia32', 0x28: 'arm', 0x3e: 'x64', 0xb7: 'arm64', 0xf3: 'riscv64', 0x15: 'ppc64', 0x16: 's390x' }
const ELF_OS: Record<number, string> = { 0: 'linux', 3: 'linux', 9: 'freebsd' }
const MACHO_CPUS: Record<number, string> = { 0x01000007: 'x64', 0x0100000c: 'arm64' }
const PE_MACHINES: Record<number, string> = { 0x8664: 'x64', 0xaa64: 'arm64', 0x14c: 'ia32' }

/** Platform and architecture from an executable header, as far as it tells them. */
export function headerTarget(bytes: Buffer): { platform?: string; arch?: string } {
  if (bytes.length >= 20 && bytes.readUInt32BE(0) === 0x7f454c46) {
    const little = bytes[5] === 1
    const machine = little ? bytes.readUInt16LE(18) : bytes.readUInt16BE(18)
    return { platform: ELF_OS[bytes[7]!], arch: ELF_MACHINES[machine] }
  }
  if (bytes.length >= 8 && bytes.readUInt32LE(0) === 0xfeedfacf) return { platform: 'darwin', arch: MACHO_CPUS[bytes.readUInt32LE(4)] }
  if (bytes.length >= 0x40 && bytes.toString('latin1', 0, 2) === 'MZ') {
    const pe = bytes.readUInt32LE(0x3c)
    if (pe + 6 <= bytes.length && bytes.toString('latin1', pe, pe + 4) === 'PE\0\0') return { platform: 'win32', arch: PE_MACHINES[bytes.readUInt16LE(pe + 4)] }
  }
  return {}
}

/** The Node ABI a (non-N-API) addon was built against, from the registration symbol it exports. */
export function abiOfAddon(bytes: Buffer): number | undefined {
  const m = /node_register_module_v(\d{2,4})/.exec(bytes.toString('latin1'))
  return m === null ? undefined : Number(m[1])
}

/** Which addon to carry, and for what (from `outpost build --addon/--platform/--arch`). */
export interface AddonChoice {
  /** The .node file; default: the host's (hostAddon). */
  file?: string
  /** The target's platform and architecture: checked against the file's header, needed when it does not tell. */
  platform?: string
  arch?: string
}

/** The addon a bundle carries: its bytes and what it is built for. */
export interface ResolvedAddon extends AddonTarget {
  source: string
  bytes: Buffer
}

/**
 * Reads the addon to carry and what it is built for. For the host's, platform and architecture
 * are this process's; for another file, its header's, which must agree with `platform`/`arch` when
 * given. The ABI always comes from the file: node_modules may have been built by another Node.
 * @throws BAD_ARGUMENT for a missing file, or a target that is unknown or disagrees with the file
 */
export function resolveAddon(choice: AddonChoice, root: string): ResolvedAddon {
  const given = choice.file !== undefined
  const source = path.resolve(choice.file ?? hostAddon(root))
  const bad = (message: string): OutpostError => new OutpostError(ErrorCode.BAD_ARGUMENT, message)
  if (!existsSync(source)) {
    throw given ? bad(`--addon ${choice.file}: no such file`) : bad(`better-sqlite3's addon is not built at ${path.relative(root, source)}: run npm install (or npm rebuild better-sqlite3), or give one with --addon`)
  }
  const bytes = readFileSync(source)
  const nodeAbi = abiOfAddon(bytes)
  if (nodeAbi === undefined) throw bad(`${source} is not a better-sqlite3 addon: it exports no node_register_module_v<ABI> symbol`)
  const header = headerTarget(bytes)
  const target = (key: 'platform' | 'arch'): string => {
    const flag = choice[key]
    const fromFile = header[key]
    if (flag !== undefined && fromFile !== undefined && flag !== fromFile) throw bad(`--${key} ${flag} does not match the addon ${source}, which is built for ${fromFile}${given ? '' : `; give that target's addon with --addon`}`)
    if (flag !== undefined) return flag
    if (fromFile !== undefined) return fromFile
    if (!given) return process[key]
    throw bad(`cannot tell the ${key} of ${source} from its header; give --${key}`)
  }
  return { source, bytes, nodeAbi, platform: target('platform'), arch: target('arch') }
}

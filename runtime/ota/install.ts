// Installing a complete bundle directory into a device's inactive slot (A/B), shared by
// `outpost flash --to` (build/flash.ts, from a laptop) and over-the-air flashing (the device itself,
// ota-service.ts). Node built-ins and the launcher's layout only: a device bundle carries it.
// The order is what keeps a device bootable when the process is killed at any point: the new
// slot is complete and flushed before it is renamed into place, and the boot pointer is switched
// last, by one rename (docs/build.md, "Flash").
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { ErrorCode, OutpostError } from '../errors.js'
import { fsp } from '../lazy-builtin.js'
import { KEYS_DIR, loadPointer, otherSlot, readRegularFile, SLOTS_DIR, slotDir, syncDir, takeFolderLock, writeFileAtomic, writePointer, type BootPointer, type SlotName } from '../launcher/launcher.js'

/** Where a slot is put together before it is renamed into place, under slots/. */
export const INCOMING = '.incoming'

/** The slot a bundle goes into and the pointer it was chosen from. */
export interface SlotChoice {
  slot: SlotName
  /** The boot pointer before the install, or undefined on a device flashed for the first time. */
  pointer: BootPointer | undefined
  /** slots/.incoming: the folder to fill (it does not exist yet). */
  incoming: string
  /** Why active.json was damaged: it was kept as active.json.damaged, and `pointer` is the one recovered (as the launcher recovers it) and written in its place. */
  damaged?: string
}

/** The file in a device's folder that says a flash is under way there: `<pid> <boot id>`. */
export const FLASH_LOCK = 'flash.lock'

/**
 * Marks the device folder `root` as being flashed by this process, until the function returned
 * is called. Before, two flashes at once (two `outpost flash --to`, or one and the device's own
 * over-the-air install) filled the same slots/.incoming, each removed the other's work as a killed
 * flash's leftovers, and both could report success with one of the bundles on neither slot. A
 * mark left by a process that is gone (kill -9, a power cut: another boot) is taken over.
 * @throws STORE_IN_USE when a running process flashes `root`; what writing the folder throws (a full or read-only disk)
 */
export function takeFlashLock(root: string): () => void {
  return takeFolderLock(path.join(root, FLASH_LOCK), (pid) =>
    new OutpostError(ErrorCode.STORE_IN_USE, `the device is being flashed by another process${pid === undefined ? '' : ` (pid ${pid})`}; nothing was changed: flash again once it has ended (a ${FLASH_LOCK} left with no flash running may be removed)`),
  )
}

/** Leftovers of an install that was killed: the half-written slot, a replaced slot not yet removed, temporary files. */
async function removeLeftovers(root: string): Promise<void> {
  const slots = path.join(root, SLOTS_DIR)
  for (const name of existsSync(slots) ? readdirSync(slots) : []) {
    if (name.startsWith('.')) await fsp().rm(path.join(slots, name), { recursive: true, force: true })
  }
  for (const dir of [root, path.join(root, KEYS_DIR)]) {
    for (const name of existsSync(dir) ? readdirSync(dir) : []) if (/\.\d+\.tmp$/.test(name)) await fsp().rm(path.join(dir, name), { force: true })
  }
}

/**
 * Clears what a killed install left, makes slots/ and keys/, and picks the slot that is not
 * active; that slot stops being somewhere to roll back to (it is about to be overwritten).
 * A damaged active.json is replaced first by the pointer the launcher would recover to (loadPointer).
 * @throws what writing the device throws (a full or read-only disk)
 */
export async function chooseInactiveSlot(root: string): Promise<SlotChoice> {
  await removeLeftovers(root)
  await fsp().mkdir(path.join(root, SLOTS_DIR), { recursive: true })
  await fsp().mkdir(path.join(root, KEYS_DIR), { recursive: true })
  const { pointer, damaged } = loadPointer(root, (file, data) => (writeFileAtomic(path.join(root, file), data), true))
  const slot: SlotName = pointer === undefined ? 'a' : otherSlot(pointer.slot)
  if (pointer !== undefined && pointer.previous === slot) writePointer(root, { ...pointer, previous: null })
  return { slot, pointer, incoming: path.join(root, SLOTS_DIR, INCOMING), damaged }
}

/** Renames the complete folder `incoming` (its files and entries flushed: syncDir) into `slot`'s place, the slot's old content removed after. */
export async function placeSlot(root: string, slot: SlotName, incoming: string): Promise<void> {
  const slotPath = slotDir(root, slot)
  const replaced = path.join(root, SLOTS_DIR, `.replaced-${slot}`)
  if (existsSync(slotPath)) await fsp().rename(slotPath, replaced)
  await fsp().rename(incoming, slotPath)
  syncDir(path.join(root, SLOTS_DIR))
  await fsp().rm(replaced, { recursive: true, force: true })
}

/** Switches the boot pointer to `slot` (new, on trial), the active one kept as its previous. @returns the new pointer */
export function switchToSlot(root: string, slot: SlotName, before: BootPointer | undefined, at = new Date().toISOString()): BootPointer {
  const next: BootPointer = { format: 1, slot, previous: before?.slot ?? null, confirmed: false, starts: 0, switchedAt: at }
  writePointer(root, next)
  return next
}

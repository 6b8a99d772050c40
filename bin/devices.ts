// `outpost devices`: the gateway's device table from the command line. A stub until part B of
// issue 13 lands (it replaces this body).
import { ErrorCode, OutpostError } from '../runtime/errors.js'

/** How to call `outpost devices`, shown after a wrong call. */
export const DEVICES_HELP = `Usage: outpost devices <add|list|revoke|rotate> [id] [--role R] [--json] [--config FILE]`

/** Runs one `outpost devices` command and returns what it prints. @throws BAD_ARGUMENT for a wrong call */
export async function runDevicesCommand(rest: string[], opts: { dataDir: string; role?: string; json?: boolean; mqttUrl: string }): Promise<string> {
  void opts
  throw new OutpostError(ErrorCode.BAD_ARGUMENT, `outpost devices ${rest[0] ?? ''} is not available yet`)
}

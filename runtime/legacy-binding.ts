// Node's process.binding, for the few native pieces a device takes without loading the module
// that wraps them (each module costs a device's start 1-2 ms). process.binding is deprecated
// (DEP0111): it warns when pending deprecations are on, and under --throw-deprecation that warning
// would end the process; then nothing is returned and the caller loads the module instead.

/**
 * True when pending deprecations are on: the flag in any spelling (--pending_deprecation,
 * --pending-deprecation=true), on the command line or in NODE_OPTIONS, NODE_PENDING_DEPRECATION=1,
 * or --throw-deprecation.
 */
function deprecationsWarn(): boolean {
  const flag = /--pending[-_]deprecation/
  return process.execArgv.some((a) => flag.test(a)) || flag.test(process.env.NODE_OPTIONS ?? '') || process.env.NODE_PENDING_DEPRECATION === '1' || (process as { throwDeprecation?: boolean }).throwDeprecation === true
}

/** Node's internal binding `name`, or undefined (deprecations warn, or this Node has no such binding). */
export function legacyBinding<T>(name: string): T | undefined {
  if (deprecationsWarn()) return undefined
  try {
    return (process as unknown as { binding(name: string): T }).binding(name)
  } catch {
    return undefined
  }
}

/** The value a promise rejects with; fails the test when it fulfils instead. */
export async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

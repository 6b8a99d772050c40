// Device bundles: build (outpost build), sign (outpost keys generate), verify before installing.
// See docs/build.md.
export { bundleDevice, deviceEntry, NODE_TARGET, type DeviceBundle } from './bundle.js'
export { buildDevice, checkSigning, defaultOutDir, listDevices, type BuildOptions, type BuildStep, type BuiltDevice } from './build-device.js'
export { ADDON_FILE, abiOfAddon, headerTarget, hostAddon, nodeRangeOfAbi, resolveAddon, type AddonChoice, type AddonTarget } from './addon.js'
export { DEVICE_PATCHES, DEVICE_STUBS, type DevicePatch, type DeviceStub } from './device-stubs.js'
export { MANIFEST_FILE, SIGNATURE_FILE, MANIFEST_FORMAT, manifestBytes, resolveBuildTime, type Manifest, type ManifestFile } from './manifest.js'
export { generateSigningKeys, keyIdOf, loadSigningKey, signManifest, toPublicKey, type KeyInput, type ManifestSignature } from './signing.js'
export { DEFAULT_KEY_DIR, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, writeKeyPair, type WrittenKeys } from './keys.js'
export { BUDGETS_FILE, DEFAULT_BUDGET, budgetFor, checkBudget, kb, sizeBreakdown, type SizeBudget, type SizeShare } from './sizes.js'
export { verifyBundle, type VerifyTarget } from './verify.js'
export { PROJECT_ROOT } from './project-root.js'
export { currentBundle, stampFile } from './bundle-stamp.js'
export { ensureRunnableBundle, stopBundler, type RunBundleOptions, type RunnableBundle } from './run-bundle.js'

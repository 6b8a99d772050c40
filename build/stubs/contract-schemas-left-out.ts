// Stands in for runtime/service/contract-schemas.ts in device bundles: the bundle carries its
// contracts' document parts as a table (build/contract-table.ts), not the converter. Without
// `contractServiceOf`, a contract missing from the table is announced with open schemas.
export {}

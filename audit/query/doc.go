// Package query reads audit logs fast and selects records from them: the
// engine behind `interlock audit query` and `interlock audit export`, and
// the record decoder `interlock audit report` uses (a strict Decoder).
//
// A Reader streams the records of many files in order, decoding the fields
// of the record contract into a Record without a map per line and keeping
// the line as written. A Query applies a Filter and joins each call record
// to its result record in bounded memory, so that a call's status can be
// filtered on and written beside it. Nothing here checks the hash chain:
// that is `interlock audit verify` (audit.VerifyFiles).
package query

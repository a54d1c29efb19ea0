// Package certs is the gateway's PKI: the OPC 10000-12 (Part 12, Annex F)
// folder layout of certificate stores, the gateway's own application instance
// certificate, and validation of peer certificates in the order of OPC
// 10000-4 §6.1.3.
//
// Layout under the store directory:
//
//	own/certs        the gateway's application instance certificate (DER)
//	own/private      its RSA private key (PEM, mode 0600; directory 0700)
//	trusted/certs    certificates trusted directly: application certificates or CAs
//	trusted/crl      CRLs of trusted CAs
//	issuer/certs     CA certificates used to build chains, not trusted by themselves
//	issuer/crl       CRLs of those CAs
//	rejected/certs   certificates that failed the trust check, for an operator to review
//
// Certificates are written as DER, named by their thumbprint; DER and PEM
// files of any name are read. An unknown certificate is copied to rejected
// and refused, never trusted automatically.
package certs

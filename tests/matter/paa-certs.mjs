// Writes matter.js's two Matter test PAA certificates (DER) into the folder named, for the
// Matter server's --paa-root-cert-dir (it trusts only what is there, and cannot download offline).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestCert_PAA_FFF1_Cert, TestCert_PAA_NoVID_Cert } from "@matter/protocol";

const dir = process.argv[2];
writeFileSync(join(dir, "Chip-Test-PAA-FFF1-Cert.der"), TestCert_PAA_FFF1_Cert);
writeFileSync(join(dir, "Chip-Test-PAA-NoVID-Cert.der"), TestCert_PAA_NoVID_Cert);

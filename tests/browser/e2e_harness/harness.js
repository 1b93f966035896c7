// Loads the product's browser trust modules, under the product CSP, for interop tests.
import * as statements from "/e2e/statements.js";
import * as webauthn from "/e2e/webauthn.js";
import * as safety from "/e2e/safety.js";
import * as pairing from "/e2e/pairing.js";
import * as keys from "/e2e/keys.js";
import * as envelope from "/e2e/envelope.js";

window.e2e = { statements, webauthn, safety, pairing, keys, envelope };
document.body.dataset.ready = "1";

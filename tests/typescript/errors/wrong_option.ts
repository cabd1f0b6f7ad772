// A deliberate type error: tsc must refuse it (tests/integration/test_typescript.py), which proves
// the declarations are applied (with no declarations, the import would be `any`).
import { wsClient } from "../../../src/crosswire/static/client.js";

wsClient({ url: "ws://127.0.0.1:8000/", queueSize: "many" });

// Prints the path of the headless Chromium that @sparticuz/chromium ships inside the npm
// package (unpacked on first use; nothing is downloaded). tests/browser.py runs it.
import chromium from "@sparticuz/chromium";

console.log(await chromium.executablePath());

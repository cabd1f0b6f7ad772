// Runs one scenario of scenarios.mjs in Node.js. argv: <client.js path> <ws url> <scenario>
// [more urls]. Prints "step:<name>" lines when the Python side must act, and waits for a line
// on stdin for each; prints one final JSON line with what happened.
import { pathToFileURL } from "node:url";
import readline from "node:readline";
import { scenarios } from "./scenarios.mjs";

const [clientPath, url, scenario, ...more] = process.argv.slice(2);
const { wsClient } = await import(pathToFileURL(clientPath).href);
const input = readline.createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();

async function step(name) {
  console.log(`step:${name}`);
  await lines.next(); // the Python side answers when done
}

const result = await scenarios[scenario]({ wsClient, url, more, step });
console.log(JSON.stringify(result));
input.close(); // no process.exit(): a timer or socket left behind keeps Node alive, and fails the test

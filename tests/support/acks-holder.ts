/**
 * A process that acknowledges and is then killed (tests/acks-held.test.ts):
 * it acks what a device received (held) and what the person read (written),
 * says "acked", and waits to be killed -9 with the received marks still held.
 * argv: database url, user, device, conversation, received seq, read seq.
 */
import { openDatabase } from "../../db/connect";
import { Acks } from "../../server/acks";
import { CursorStore } from "../../server/cursor-store";

const [url, user, device, conv, received, read] = process.argv.slice(2);
const database = openDatabase(url!, { max: 1 });
const acks = new Acks(new CursorStore(database.sql), () => {}, { holdMs: 3_600_000 });
await acks.ack(Number(user), Number(device), [[Number(conv), Number(received)]], [[Number(conv), Number(read)]]);
console.log("acked");
setInterval(() => {}, 1_000);

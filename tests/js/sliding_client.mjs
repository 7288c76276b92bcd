// Drives trio-sync's sliding sync endpoint with matrix-js-sdk's SlidingSync and reports,
// one JSON object a line on stdout after "@@ ", every room update and every completed request.
// Usage: node sliding_client.mjs BASE_URL ACCESS_TOKEN USER_ID
// Stops when stdin closes.
import { createClient } from "matrix-js-sdk";
import {
  SlidingSync,
  SlidingSyncEvent,
  SlidingSyncState,
} from "matrix-js-sdk/lib/sliding-sync.js";

const [baseUrl, accessToken, userId] = process.argv.slice(2);
const say = (obj) => process.stdout.write("@@ " + JSON.stringify(obj) + "\n");

const client = createClient({ baseUrl, accessToken, userId });
const lists = new Map([
  [
    "all",
    {
      ranges: [[0, 19]],
      timeline_limit: 5,
      required_state: [
        ["m.room.name", ""],
        ["m.room.member", "$LAZY"],
      ],
    },
  ],
]);
const sliding = new SlidingSync(
  baseUrl,
  lists,
  { timeline_limit: 5, required_state: [] },
  client,
  5000,
);

sliding.on(SlidingSyncEvent.RoomData, (roomId, data) => {
  say({
    kind: "room",
    roomId,
    name: data.name ?? null,
    initial: Boolean(data.initial),
    membership: data.membership ?? null,
    invite: Array.isArray(data.invite_state),
    timeline: (data.timeline ?? []).map((e) => e.content?.body ?? e.type),
  });
});
sliding.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
  if (err) {
    say({ kind: "error", status: err.httpStatus ?? null, message: String(err) });
  } else if (state === SlidingSyncState.Complete) {
    say({ kind: "complete", count: sliding.getListData("all")?.joinedCount ?? null });
  }
});

process.stdin.on("end", () => {
  sliding.stop();
  process.exit(0);
});
process.stdin.resume();
sliding.start();

/**
 * The ProgressEmitter of SPEC 2 grew into the {@link EventHub} (`event-hub.ts`): persist-then-deliver
 * appends, subscriptions that replay the durable log after `afterSeq` and then stream live events with no
 * gap and no duplicate, bounded per-subscriber queues, and work-order events on their own sequence. The
 * name stays importable from the file the SPEC's file map names.
 */
export { EventHub as ProgressEmitter } from './event-hub.js';

/** Growth stages of a stack, and which of them the planner can build today. */
export const STAGES = ["mvp", "separated", "scaled"] as const;
export type Stage = (typeof STAGES)[number];
/** Stages the planner can build today; the others are designed but not yet built. */
export const BUILT_STAGES: readonly Stage[] = ["mvp", "separated"];
/** Stages whose servers talk over the stack's private network. */
export const SPLIT_STAGES: readonly Stage[] = ["separated", "scaled"];

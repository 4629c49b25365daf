/** Dataset-neutral preference pairs, before encoding. */

/** One chat message. */
export interface Message {
  /** who speaks */
  role: "system" | "user" | "assistant";
  /** what is said */
  content: string;
}

/** A user's preference pair with its context. */
export interface RawPair {
  /** user id */
  user: string;
  /** the conversation the pair comes from */
  conversationId: string | number;
  /** the context: a message list (PRISM) or the post text (Reddit) */
  prompt: Message[] | string;
  /** the preferred response */
  chosen: string;
  /** the other response */
  rejected: string;
  /** the dataset's own split, where it has one */
  split?: "train" | "val";
}

/** The conversation to encode for one reply: the prompt plus the reply as the assistant's turn. */
export function conversationOf(prompt: Message[] | string, reply: string): Message[] {
  const ctx: Message[] = typeof prompt === "string" ? [{ role: "user", content: prompt }] : prompt;
  return [...ctx, { role: "assistant", content: reply }];
}

/** Counts printed by the preprocessors. */
export interface PairStats {
  /** users */
  users: number;
  /** conversations */
  conversations: number;
  /** preference pairs */
  pairs: number;
  /** dataset-specific counts (e.g. pairs dropped and why) */
  [detail: string]: number;
}

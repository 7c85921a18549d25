// The agent's task is to implement these.
export function add(a, b) {
  throw new Error('not implemented');
}

export function multiply(a, b) {
  throw new Error('not implemented');
}

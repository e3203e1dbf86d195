// memcached binary protocol constants, as in memcached's protocol_binary.h.
// Values are the bytes on the wire; the comment is memcached's name.

export const REQUEST_MAGIC = 0x80; // PROTOCOL_BINARY_REQ
export const RESPONSE_MAGIC = 0x81; // PROTOCOL_BINARY_RES
export const HEADER_LENGTH = 24;
/** INCR/DECR expiration meaning "fail with KEY_ENOENT instead of creating the key". */
export const ARITH_DO_NOT_CREATE = 0xffffffff;

export const enum Opcode {
  Get = 0x00, // GET
  Set = 0x01, // SET
  Add = 0x02, // ADD
  Replace = 0x03, // REPLACE
  Delete = 0x04, // DELETE
  Increment = 0x05, // INCREMENT
  Decrement = 0x06, // DECREMENT
  Quit = 0x07, // QUIT
  Flush = 0x08, // FLUSH
  GetQ = 0x09, // GETQ
  Noop = 0x0a, // NOOP
  Version = 0x0b, // VERSION
  GetK = 0x0c, // GETK
  GetKQ = 0x0d, // GETKQ
  Append = 0x0e, // APPEND
  Prepend = 0x0f, // PREPEND
  Stat = 0x10, // STAT
  SetQ = 0x11, // SETQ
  AddQ = 0x12, // ADDQ
  ReplaceQ = 0x13, // REPLACEQ
  DeleteQ = 0x14, // DELETEQ
  IncrementQ = 0x15, // INCREMENTQ
  DecrementQ = 0x16, // DECREMENTQ
  QuitQ = 0x17, // QUITQ
  FlushQ = 0x18, // FLUSHQ
  AppendQ = 0x19, // APPENDQ
  PrependQ = 0x1a, // PREPENDQ
  Verbosity = 0x1b, // VERBOSITY (memcached 1.6 answers it "Unknown command")
  Touch = 0x1c, // TOUCH
  Gat = 0x1d, // GAT
  GatQ = 0x1e, // GATQ
  SaslListMechs = 0x20, // SASL_LIST_MECHS
  SaslAuth = 0x21, // SASL_AUTH
  SaslStep = 0x22, // SASL_STEP
  GatK = 0x23, // GATK
  GatKQ = 0x24, // GATKQ
}

export const enum Status {
  Success = 0x0000, // SUCCESS
  KeyNotFound = 0x0001, // KEY_ENOENT
  KeyExists = 0x0002, // KEY_EEXISTS
  TooLarge = 0x0003, // E2BIG
  InvalidArguments = 0x0004, // EINVAL
  NotStored = 0x0005, // NOT_STORED
  NonNumeric = 0x0006, // DELTA_BADVAL
  AuthError = 0x0020, // AUTH_ERROR
  AuthContinue = 0x0021, // AUTH_CONTINUE
  UnknownCommand = 0x0081, // UNKNOWN_COMMAND
  OutOfMemory = 0x0082, // ENOMEM
  NotSupported = 0x0083, // NOT_SUPPORTED
  InternalError = 0x0084, // EINTERNAL
  Busy = 0x0085, // EBUSY
  TemporaryFailure = 0x0086, // ETMPFAIL
}

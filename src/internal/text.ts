/**
 * Text that UTF-8 cannot carry.
 *
 * @internal
 */

/** A UTF-16 surrogate without its pair: UTF-8 has no encoding for it (it becomes U+FFFD on the way). */
export const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** Whether `text` holds a lone surrogate. */
export const hasLoneSurrogate = (text: string): boolean => loneSurrogate.test(text)

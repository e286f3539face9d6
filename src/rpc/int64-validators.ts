/** class-validator rules for the RPC payloads: 64-bit ids as number-or-string, and raw bodies checked for their cmd. */
import { registerDecorator, type ValidationArguments, type ValidationOptions } from 'class-validator';
import { anyFormatBodyProblem } from '../format/bodies.js';
import { INT64_MAX, INT64_MIN } from '../format/int64.js';

const DECIMAL = /^-?\d{1,20}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Parses a wire int64 (safe-integer JSON number or decimal string); null when it is neither or out of int64 range. */
export function parseWireInt64(value: unknown): bigint | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : null;
  if (typeof value === 'string' && DECIMAL.test(value)) {
    const n = BigInt(value);
    return n >= INT64_MIN && n <= INT64_MAX ? n : null;
  }
  return null;
}

/** Why `value` is not a non-negative int64, or null when it is one. */
export function nonNegativeInt64Problem(value: unknown): string | null {
  if (typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value))
    return 'must be a safe integer when sent as a number (send larger ids as decimal strings)';
  if (typeof value === 'string' && DECIMAL.test(value) && parseWireInt64(value) === null)
    return 'must fit in a signed 64-bit integer';
  const n = parseWireInt64(value);
  if (n === null) return 'must be a non-negative integer (a JSON number or a decimal string)';
  if (n < 0n) return 'must be a non-negative integer';
  return null;
}

/** A non-negative int64 id given as a safe-integer number or a decimal string. */
export function IsNonNegativeInt64(options?: ValidationOptions): PropertyDecorator {
  return (target: object, propertyName: string | symbol) =>
    registerDecorator({
      name: 'isNonNegativeInt64',
      target: target.constructor,
      propertyName: propertyName as string,
      options,
      validator: {
        validate: (value: unknown) => nonNegativeInt64Problem(value) === null,
        defaultMessage: (args: ValidationArguments) =>
          `${args.property} ${nonNegativeInt64Problem(args.value)}`,
      },
    });
}

/** A non-empty array (at most `max` items) of non-negative int64 ids. */
export function IsInt64List(max: number, options?: ValidationOptions): PropertyDecorator {
  const problem = (value: unknown, property: string): string | null => {
    if (!Array.isArray(value)) return `${property} must be an array of ids`;
    if (value.length === 0) return `${property} must not be empty`;
    if (value.length > max) return `${property} has ${value.length} items; the limit is ${max}`;
    for (let i = 0; i < value.length; i++) {
      const p = nonNegativeInt64Problem(value[i]);
      if (p) return `${property}[${i}] ${p}`;
    }
    return null;
  };
  return (target: object, propertyName: string | symbol) =>
    registerDecorator({
      name: 'isInt64List',
      target: target.constructor,
      propertyName: propertyName as string,
      options,
      validator: {
        validate: (value: unknown, args?: ValidationArguments) =>
          problem(value, args?.property ?? String(propertyName)) === null,
        defaultMessage: (args: ValidationArguments) => problem(args.value, args.property) ?? '',
      },
    });
}

/** Decodes strict base64 (Buffer.from silently skips bad characters); null when the text is not base64. */
export function decodeBase64(value: unknown): Buffer | null {
  if (typeof value !== 'string' || value.length % 4 !== 0 || !BASE64.test(value)) return null;
  return Buffer.from(value, 'base64');
}

/**
 * A base64 body that can be stored as the object's `cmd`. When cmd itself is invalid its own rule reports
 * that, so this one only checks the encoding.
 */
export function IsStorableBody(cmdProperty: string, allowedCmds: readonly number[]): PropertyDecorator {
  const problem = (value: unknown, property: string, cmd: unknown): string | null => {
    if (typeof value !== 'string') return `${property} must be a base64 string`;
    const body = decodeBase64(value);
    if (!body) return `${property} is not valid base64`;
    if (typeof cmd !== 'number' || !allowedCmds.includes(cmd)) return null;
    const p = anyFormatBodyProblem(cmd, body);
    return p ? `${property}: ${p}` : null;
  };
  return (target: object, propertyName: string | symbol) =>
    registerDecorator({
      name: 'isStorableBody',
      target: target.constructor,
      propertyName: propertyName as string,
      validator: {
        validate: (value: unknown, args?: ValidationArguments) =>
          problem(
            value,
            String(propertyName),
            (args?.object as Record<string, unknown> | undefined)?.[cmdProperty],
          ) === null,
        defaultMessage: (args: ValidationArguments) =>
          problem(args.value, args.property, (args.object as Record<string, unknown>)[cmdProperty]) ?? '',
      },
    });
}

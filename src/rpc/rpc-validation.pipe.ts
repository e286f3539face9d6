import {
  Injectable,
  ValidationPipe,
  type ArgumentMetadata,
  type Type,
  type ValidationError,
} from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';
import { compilePayloadCheck, type PayloadCheck } from './payload-check.js';

const BUILT_IN_TYPES = new Set<unknown>([Object, String, Number, Boolean, Array]);

/** Every message of every failed rule, nested ones included. */
function messagesOf(errors: ValidationError[], prefix = ''): string[] {
  const out: string[] = [];
  for (const e of errors) {
    for (const [rule, text] of Object.entries(e.constraints ?? {})) {
      // Nest's own "object expected" rule names the parameter kind, not a field.
      out.push(rule === 'isObject' && !prefix ? 'payload must be a JSON object' : prefix + text);
    }
    if (e.children?.length) out.push(...messagesOf(e.children, `${prefix}${e.property}.`));
  }
  return out;
}

/**
 * The ValidationPipe configured for RPC: failures become RpcExceptions whose message names each bad field
 * (Nest's default throws a BadRequestException, which the RPC layer would report as an unknown error).
 * Unknown fields are dropped, not refused, so newer clients can add fields.
 *
 * A payload that passes every rule takes a fast path compiled from the DTO's own class-validator rules
 * (see payload-check.ts); anything else goes through class-validator, which writes the error message.
 */
@Injectable()
export class RpcValidationPipe extends ValidationPipe {
  private readonly checks = new Map<unknown, PayloadCheck | null>();

  constructor() {
    super({
      whitelist: true,
      forbidUnknownValues: true,
      validationError: { target: false, value: false },
      exceptionFactory: (errors: ValidationError[]) => new RpcException(messagesOf(errors).join('; ')),
    });
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const type = metadata.metatype;
    const dto = type && !BUILT_IN_TYPES.has(type);
    if (!dto) return super.transform(value, metadata);
    // Every payload is an object; saying so beats listing each field a number or an array lacks.
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw new RpcException('payload must be a JSON object');
    return this.acceptFast(type, value) ?? super.transform(value, metadata);
  }

  /** The whitelisted copy of a payload that passes every rule of `dto`, or null when it needs class-validator. */
  acceptFast(dto: Type, value: unknown): Record<string, unknown> | null {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
    let check = this.checks.get(dto);
    if (check === undefined) {
      check = compilePayloadCheck(dto);
      this.checks.set(dto, check);
    }
    return check ? check(value as Record<string, unknown>) : null;
  }

  /**
   * class-validator's verdict on one item of a batch as a whole payload of `dto` (for items `acceptFast`
   * did not accept): the checked copy, or the exception a lone request would get.
   */
  async checkSlowly(dto: Type, value: unknown): Promise<Record<string, unknown> | RpcException> {
    try {
      return (await this.transform(value, { type: 'body', metatype: dto })) as Record<string, unknown>;
    } catch (err) {
      if (err instanceof RpcException) return err;
      throw err;
    }
  }
}

import { Injectable, ValidationPipe, type ArgumentMetadata, type ValidationError } from '@nestjs/common';
import { RpcException } from '@nestjs/microservices';

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
 */
@Injectable()
export class RpcValidationPipe extends ValidationPipe {
  constructor() {
    super({
      whitelist: true,
      forbidUnknownValues: true,
      validationError: { target: false, value: false },
      exceptionFactory: (errors: ValidationError[]) => new RpcException(messagesOf(errors).join('; ')),
    });
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // Every payload is an object; saying so beats listing each field a number or an array lacks.
    const dto = metadata.metatype && !BUILT_IN_TYPES.has(metadata.metatype);
    if (dto && (value === null || typeof value !== 'object' || Array.isArray(value)))
      throw new RpcException('payload must be a JSON object');
    return super.transform(value, metadata);
  }
}

import { getMetadataStorage, ValidationTypes, type ValidationArguments } from 'class-validator';

/** The whitelisted copy of an object that passes every rule of its DTO, or null ("ask class-validator"). */
export type PayloadCheck = (value: Record<string, unknown>) => Record<string, unknown> | null;

interface Rule {
  readonly property: string;
  readonly constraints: unknown[];
  readonly validate: (value: unknown, args: ValidationArguments) => unknown;
}

/**
 * Compiles a DTO's class-validator rules into one synchronous function: the same validator instances,
 * called with the same arguments, without class-transformer's copy, the error objects and the promise
 * machinery (which cost more than the save itself at full load). The rules stay in one place, the DTO
 * decorators. Only plain property rules are compiled; a DTO that uses anything else (nested or
 * conditional validation, `each`, groups, async rules) gets null and always goes through class-validator.
 * The check only ever accepts: a payload it does not accept goes to class-validator, which accepts it or
 * writes the error message.
 */
export function compilePayloadCheck(dto: Function): PayloadCheck | null {
  const storage = getMetadataStorage();
  const metas = storage.getTargetValidationMetadatas(dto, undefined as unknown as string, false, false);
  if (metas.length === 0) return null;
  const rules: Rule[] = [];
  const properties = new Set<string>();
  for (const m of metas) {
    if (m.type !== ValidationTypes.CUSTOM_VALIDATION || m.each || m.validateIf || m.groups?.length)
      return null;
    for (const c of storage.getTargetValidatorConstraints(m.constraintCls)) {
      if (c.async) return null;
      const instance = c.instance as { validate: Rule['validate'] };
      rules.push({
        property: m.propertyName,
        constraints: m.constraints,
        validate: instance.validate.bind(instance),
      });
    }
    properties.add(m.propertyName);
  }
  const targetName = dto.name;
  const names = [...properties];
  return (value) => {
    for (const r of rules) {
      const v = value[r.property];
      const args: ValidationArguments = {
        targetName,
        property: r.property,
        object: value,
        value: v,
        constraints: r.constraints,
      };
      if (r.validate(v, args) !== true) return null;
    }
    const out: Record<string, unknown> = {};
    for (const p of names) out[p] = value[p];
    return out;
  };
}

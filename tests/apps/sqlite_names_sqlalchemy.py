"""A SQLAlchemy ORM app on SQLite (no OpenTelemetry code) with tables and columns named
after reserved words ("user", "order", "group", "select"), which SQLAlchemy
double-quotes: the statements the distro must keep readable. Runs the ORM's usual
operations (lazy, selectin and joined loads, filters, updates, inserts, deletes), then
one textual query with a secret in a double-quoted value, and exits.
Environment: DB_PATH, SECRET.
"""

import os

import sqlalchemy as sa
from sqlalchemy import ForeignKey, String, delete, func, insert, select, text, update
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "user"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    group: Mapped[str] = mapped_column(String(20), default="a")
    orders: Mapped[list["Order"]] = relationship(back_populates="user")


class Order(Base):
    __tablename__ = "order"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    order: Mapped[int] = mapped_column(default=0)
    select_: Mapped[str] = mapped_column("select", String(10), default="x")
    CamelCase: Mapped[str] = mapped_column(String(10), default="y")
    user: Mapped[User] = relationship(back_populates="orders")


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    order: Mapped[int] = mapped_column(default=0)
    user: Mapped[str] = mapped_column(String(10), default="")
    group: Mapped[str] = mapped_column(String(10), default="")


def main() -> None:
    engine = sa.create_engine(f"sqlite:///{os.environ['DB_PATH']}")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        user = User(name="alice", group="g1")
        s.add(user)
        s.flush()
        s.add_all([Order(user_id=user.id, order=1), Order(user_id=user.id, order=2)])
        s.add_all([Item(order=1, user="bob", group="x"), Item(order=2, user="carl", group="y")])
        s.commit()
        for order in s.scalars(select(Order)):
            assert order.user.name  # lazy load
        s.expire_all()
        list(s.scalars(select(User).options(selectinload(User.orders))))
        s.expire_all()
        list(s.scalars(select(Order).options(joinedload(Order.user))).unique())
        list(s.scalars(select(Item).where(Item.order > 0, Item.group == "x")))
        where = Item.user.in_(["bob", "carl"])
        list(s.scalars(select(Item).where(where).order_by(Item.order.desc()).limit(5)))
        s.scalar(select(func.count()).select_from(Item).where(Item.group != "z"))
        s.execute(select(Item.group, func.count(Item.id)).group_by(Item.group)).all()
        s.execute(update(Item).where(Item.order == 1).values(user="dora", group="q"))
        item = s.get(Item, 2)
        assert item is not None
        item.order, item.group = 9, "w"
        s.flush()
        s.execute(insert(Item).values(order=5, user="eve", group="z"))
        rows = [{"order": 6, "user": "f", "group": "a"}, {"order": 7, "user": "g", "group": "b"}]
        s.execute(insert(Item), rows)
        s.execute(delete(Item).where(Item.group == "z"))
        s.delete(item)
        s.flush()
        joined = select(User.name, Order.order).join(Order, Order.user_id == User.id)
        s.execute(joined.where(User.group == "g1")).all()
        s.execute(select(User, Order).where(Order.user_id == User.id)).all()  # FROM a, b
        s.commit()
        secret = os.environ["SECRET"]  # a secret SQLite reads as a string
        query = f'SELECT items.id FROM items WHERE items."group" = "{secret}"'  # noqa: S608
        s.execute(text(query)).all()
    print("APP-END", flush=True)


if __name__ == "__main__":
    main()
